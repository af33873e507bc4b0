"""Training-step speed of the real tkvr model against a minimal hand-written PyTorch loop.

    python benchmarks/train_step.py --backbone tiny --frames 8 --batch 8
    python benchmarks/train_step.py --backbone ViT-B-32 --frames 8 --batch 4 --precision 32-true
    python benchmarks/train_step.py --backbone ViT-B-16 --frames 8 --batch 32 --precision bf16-mixed --compile

Both loops run the same math on the same open_clip visual encoder with synthetic clips:
frames [B*T, 3, H, W] -> visual -> mean over T -> L2-normalise -> 100 · z · Wᵀ (W frozen) ->
cross-entropy -> backward -> AdamW step. tkvr's loop is its engine (Fabric, parameter groups,
schedule); the reference is twenty lines of plain PyTorch. Open_clip names other than tkvr's
built-ins are built with random weights (`--pretrained none`): speed does not depend on them.
Prints clips/s, step time, peak memory and model FLOPs per clip (torch.utils.flop_counter), and
on a GPU the fraction of the device's peak (MFU); `--json PATH` writes clips_per_s,
reference_clips_per_s, ratio (tkvr time / reference time), flops_per_clip.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch
import torch.nn.functional as F

# Dense bf16/fp16 tensor peaks (FLOP/s) from the vendors' data sheets.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "V100": 125e12, "L40S": 362e12, "A10": 125e12}


def device_peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAKS.items() if k in name), None)


def synthetic(batch: int, frames: int, size: int, classes: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, 3, size, size, generator=g)
    y = torch.randint(classes, (batch,), generator=g)
    return x.to(device), y.to(device)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(step, steps: int, warmup: int, sync) -> float:
    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t) / steps


def tkvr_step(args, classes: int):
    from lightning_fabric import Fabric

    from tkvr.model.video_model import build
    from tkvr.run.engine import lr_schedule
    from tkvr.run.settings import TrainConfig

    cfg = TrainConfig.from_flags({"backbone": args.backbone, "pretrained": args.pretrained, "frames": args.frames,
                                  "temporal": args.temporal, "head": "random", "grad_checkpointing": args.grad_ckpt,
                                  "compile": args.compile})
    fabric = Fabric(accelerator=args.accelerator, devices=1, precision=args.precision)
    _, model = build(cfg.model, [str(i) for i in range(classes)], ["{}"], seed=0,
                     grad_checkpointing=cfg.optim.grad_checkpointing)
    fused = fabric.device.type == "cuda"
    opt = torch.optim.AdamW(model.param_groups(5e-6, 10.0, 0.2), betas=(0.9, 0.98), fused=fused)
    if args.compile:
        model.visual = torch.compile(model.visual)
    model, opt = fabric.setup(model, opt)
    sched = lr_schedule(opt, 10, 1000)
    size = model.module.visual.image_size if hasattr(model, "module") else model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    x, y = synthetic(args.batch, args.frames, size, classes, fabric.device)

    def step():
        loss = F.cross_entropy(model(x).float(), y)
        fabric.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()

    return step, model, x, y, fabric


def reference_step(args, classes: int, device, dtype):
    """The same math in plain PyTorch: no Fabric, no tkvr."""
    import open_clip

    from tkvr.model.backbones import BUILTIN, CONFIG_DIR

    open_clip.add_model_config(CONFIG_DIR)
    name = BUILTIN.get(args.backbone, args.backbone.replace("/", "-"))
    torch.manual_seed(0)
    visual = open_clip.create_model(name).visual.to(device)
    if args.grad_ckpt:
        visual.set_grad_checkpointing(True)
    if args.compile:
        visual = torch.compile(visual)
    dim = visual.output_dim
    w = F.normalize(torch.randn(classes, dim, device=device), dim=-1)
    opt = torch.optim.AdamW(visual.parameters(), lr=5e-6, betas=(0.9, 0.98), weight_decay=0.2,
                            fused=device.type == "cuda")
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    x, y = synthetic(args.batch, args.frames, size, classes, device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            f = visual(x.flatten(0, 1)).view(args.batch, args.frames, -1).mean(1)  # [B, D]
            logits = 100.0 * F.normalize(f, dim=-1) @ w.T.to(f.dtype)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def flops_per_clip(model, x, y) -> float:
    """Counted on the module inside Fabric's wrapper: a wrapped model under mixed precision refuses
    a plain loss.backward() ("requires you to call fabric.backward"); the count is the same."""
    from torch.utils.flop_counter import FlopCounterMode

    inner = getattr(model, "module", model)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(inner(x).float(), y).backward()
    inner.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--temporal", default="tap")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    step, model, x, y, fabric = tkvr_step(args, args.classes)
    dev = fabric.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_tkvr = timed(step, args.steps, args.warmup, sync)
    mem = peak_memory_mb()
    flops = flops_per_clip(model, x, y) if not args.compile else float("nan")
    t_ref = None
    if not args.no_reference:
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
        ref = reference_step(args, args.classes, dev, dtype)
        t_ref = timed(ref, args.steps, args.warmup, sync)
    clips = args.batch / t_tkvr
    where = torch.cuda.get_device_name() if dev.type == "cuda" else \
        f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    print(f"{args.backbone}, T={args.frames}, batch {args.batch}, {args.precision}, {args.temporal}"
          f"{', compiled' if args.compile else ''} on {where}")
    print(f"  tkvr:      {clips:8.2f} clips/s  {1000 * t_tkvr:8.1f} ms/step  peak memory {mem:.0f} MiB")
    if t_ref:
        print(f"  reference: {args.batch / t_ref:8.2f} clips/s  {1000 * t_ref:8.1f} ms/step")
        print(f"  ratio tkvr/reference step time: {t_tkvr / t_ref:.3f}")
    if flops == flops:
        print(f"  model FLOPs per clip (fwd+bwd): {flops / 1e9:.2f} GFLOP")
        peak = device_peak()
        if peak:
            print(f"  MFU: {100 * flops * clips / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clips_per_s": clips, "reference_clips_per_s": args.batch / t_ref if t_ref else None,
                       "ratio": t_tkvr / t_ref if t_ref else None, "flops_per_clip": flops,
                       "step_ms": 1000 * t_tkvr, "peak_memory_mb": mem, "device": where,
                       "backbone": args.backbone, "frames": args.frames, "batch": args.batch,
                       "precision": args.precision, "compile": args.compile,
                       "peak_flops": device_peak()}, f, indent=1)


if __name__ == "__main__":
    main()
