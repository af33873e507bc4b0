"""Pretrain the toy CLIP (`--backbone toy`) contrastively on captioned still images.

    python examples/pretrain_toy_clip.py --out tkvr/assets/toy_clip.pt

The images come from tkvr.data.toy.still: a scene of the toy world's kind (clutter, lighting,
noise, occlusion) with one main shape, a quarter of them with a motion trail, captioned from a
small grammar with noise ('a photo of a small red circle at the top.', 'a big teal ring moving
left', 'a pink shape.'; the colour is a hue neighbour in 12% of captions). No still is a frame of
a toy video: the video classes' clips are not part of this data. The model is open_clip's CLIP
built from tkvr/configs/tkvr-toy.json, trained with
open_clip's ClipLoss. Everything is seeded, so the same command writes the same weights on the
same machine (CPU, one thread count); the weights ship in fp16.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def make_images(n: int, seed: int, size: int):
    """n stills from still() with a seeded generator, resized to the model's input:
    uint8 [N, 3, size, size], their captions, and what each shows (still's third value)."""
    from tkvr.data.toy import still

    g = torch.Generator().manual_seed(seed)
    imgs, caps, shown = [], [], []
    for _ in range(n):
        img, cap, meta = still(g, 64)
        imgs.append(F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)[0].round().clamp(0, 255).to(torch.uint8))
        caps.append(cap)
        shown.append(meta)
    return torch.stack(imgs), caps, shown


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tkvr/assets/toy_clip.pt")
    ap.add_argument("--images", type=int, default=40000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import open_clip

    from tkvr.model.backbones import build_backbone

    torch.manual_seed(args.seed)
    bb = build_backbone("toy", "none")  # the architecture, seeded init
    model, tok, pre = bb.clip, bb.tokenizer, bb.preprocess
    size = bb.image_size
    t0 = time.time()
    images, captions, _ = make_images(args.images, args.seed, size)
    tokens = tok(captions)  # [N, L]
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    print(f"{args.images} captioned images in {time.time() - t0:.0f}s, e.g. {captions[:3]}")

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warm = args.steps // 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (args.steps - warm))))
    loss_fn = open_clip.ClipLoss()
    g = torch.Generator().manual_seed(args.seed + 1)
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(len(images), (args.batch,), generator=g)
        x = (images[idx].float() / 255 - mean) / std
        img_f, txt_f, scale = model(x, tokens[idx])
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.3f}, scale {model.logit_scale.exp().item():.1f}, "
                  f"{time.time() - t0:.0f}s", flush=True)
    model.eval()
    check(model, tok, mean, std, size, args.seed + 2)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    print(f"wrote {args.out}")


@torch.no_grad()
def check(model, tok, mean, std, size, seed):
    """Zero-shot colour x shape on fresh stills (the truth, not the noisy caption): how well image
    and text met."""
    from tkvr.data.toy import COLOURS, SHAPES, article

    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    images, _, shown = make_images(1000, seed, size)
    truth = torch.tensor([names.index(f"{m['colour']} {m['shape']}") for m in shown])
    txt = F.normalize(model.encode_text(tok([f"a photo of {article(n)} {n}." for n in names])), dim=-1)
    img = F.normalize(model.encode_image((images.float() / 255 - mean) / std), dim=-1)
    acc = ((img @ txt.T).argmax(1) == truth).float().mean().item()
    print(f"zero-shot colour x shape on 1000 new stills: {100 * acc:.1f}% (chance {100 / len(names):.1f}%)")
    moving = [i for i, m in enumerate(shown) if m["motion"]]
    prompts = [f"a photo of {article(shown[i]['colour'])} {shown[i]['colour']} {shown[i]['shape']} moving {d}."
               for i in moving for d in ("left", "right")]
    t = F.normalize(model.encode_text(tok(prompts)), dim=-1).view(len(moving), 2, -1)  # [M, 2, D]
    s = torch.einsum("md,mkd->mk", img[moving], t)
    right = torch.tensor([shown[i]["motion"] == "right" for i in moving])
    acc = (s.argmax(1).bool() == right).float().mean().item()
    print(f"moving left vs right on the {len(moving)} trail stills among them: {100 * acc:.1f}% (chance 50%)")


if __name__ == "__main__":
    main()
