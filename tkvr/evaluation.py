"""Evaluation: softmax scores averaged over views, metrics, predictions, feature extraction,
and scoring a checkpoint on a split (the library side of `tkvr eval`).

Under DDP every rank scores its share of the samples (rank::world, no padding) and the rows are
gathered, so each sample counts exactly once whatever the number of processes.
"""

from __future__ import annotations

import random
import statistics

import torch
from torch.utils.data import DataLoader

from tkvr.errors import TkvrError
from tkvr.model import unwrap

HALVES = 10  # the half-class protocol: this many seeded random halves


def _gather_rows(fabric, local: torch.Tensor) -> torch.Tensor:
    """Rows of different counts per rank -> all rows on every rank (column 0 is the sample index;
    padding rows carry index -1 and are dropped)."""
    local = local.to(fabric.device)
    if fabric.world_size > 1:
        n = int(fabric.all_gather(torch.tensor(len(local), device=fabric.device)).max())
        pad = torch.full((n - len(local), local.shape[1]), -1, dtype=local.dtype, device=fabric.device)
        local = fabric.all_gather(torch.cat([local, pad])).reshape(-1, local.shape[1])
        local = local[local[:, 0] >= 0]
    local = local.cpu()
    return local[local[:, 0].argsort()]  # in sample order, whatever the rank split


@torch.no_grad()
def _per_sample(fabric, model, dl: DataLoader, out, width: int, limit: int | None = None) -> torch.Tensor:
    """Rows [index, label, bad, out averaged over views] for every sample, gathered over ranks,
    in sample order. Batches are [B, V, T, 3, H, W]; the B*V views go through `out` together
    ([B*V, ...] -> [B*V, width]). A batch whose videos are all unreadable gets zero rows."""
    model.eval()
    rows = []
    for i, batch in enumerate(dl):
        if limit is not None and i >= limit:
            break
        meta = torch.stack([batch["index"], batch["label"], batch["bad"]], 1).to(fabric.device, torch.float64)
        if batch["video"].numel() == 0:  # every video of this batch is unreadable: nothing to run
            y = torch.zeros(len(meta), width, dtype=torch.float64, device=fabric.device)
        else:
            x = batch["video"].to(fabric.device, non_blocking=True)  # [B, V, T, 3, H, W]
            b, v = x.shape[:2]
            y = out(x.flatten(0, 1)).float().view(b, v, -1).mean(1).double()  # [B, width]
        rows.append(torch.cat([meta, y], 1))
    model.train()
    local = torch.cat(rows) if rows else torch.zeros(0, 3 + width, dtype=torch.float64)
    return _gather_rows(fabric, local)


def predict_scores(
    fabric, model, dl: DataLoader, limit: int | None = None, average: str = "features"
) -> dict:
    """Softmax scores of every sample over its views, each sample once across ranks.
    average features: the views' video embeddings are averaged, then scored (the released
    test.py); scores: each view is scored and the softmax scores are averaged.
    Returns index [N], label [N], bad [N] (>= 0: unreadable), scores [N, C], in sample order."""
    inner = unwrap(model)
    if average == "scores":
        allr = _per_sample(
            fabric, model, dl, lambda x: model(x).float().softmax(-1), inner.head.num_classes, limit
        )
        scores = allr[:, 3:].float()
    else:

        def embed(x):  # the module itself, under the precision the Fabric wrapper would apply
            with fabric.autocast():
                return inner.embed(x)

        allr = _per_sample(fabric, model, dl, embed, inner.head.weight.shape[1], limit)  # [N, 3 + D]
        e = allr[:, 3:].float().to(fabric.device)  # [N, D]: each sample's mean embedding over its views
        model.eval()
        with torch.no_grad():
            scores = [inner.head(c).float().softmax(-1).cpu() for c in e.split(4096)]
        model.train()  # as _per_sample leaves it
        scores = torch.cat(scores) if scores else torch.zeros(0, inner.head.num_classes)
    return {
        "index": allr[:, 0].long(),
        "label": allr[:, 1].long(),
        "bad": allr[:, 2].long(),
        "scores": scores,
    }


def evaluate(
    fabric, model, dl: DataLoader, num_classes: int, limit: int | None = None, average: str = "features"
) -> dict:
    return metrics(predict_scores(fabric, model, dl, limit, average), num_classes)


def metrics(pred: dict, num_classes: int, keep: list[int] | None = None) -> dict:
    """Top-1 / top-5 / mean class accuracy (percent). `keep` restricts both the samples and the
    classifier to a class subset (the half-class protocol)."""
    ok = pred["bad"] < 0
    labels, scores = pred["label"][ok], pred["scores"][ok]
    if keep is not None:
        cols = torch.tensor(keep)
        remap = torch.full((num_classes,), -1, dtype=torch.long)
        remap[cols] = torch.arange(len(keep))
        labels = remap[labels]
        sel = labels >= 0
        labels, scores = labels[sel], scores[sel][:, cols]
        num_classes = len(keep)
    n = len(labels)
    top = scores.topk(min(5, num_classes), dim=-1).indices if n else torch.zeros(0, 1, dtype=torch.long)
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(1)
    per_class = {
        c: 100.0 * hit1[labels == c].float().mean().item() for c in range(num_classes) if (labels == c).any()
    }
    return {
        "top1": 100.0 * hit1.float().mean().item() if n else 0.0,
        "top5": 100.0 * hit5.float().mean().item() if n else 0.0,
        "mean_class_accuracy": sum(per_class.values()) / len(per_class) if per_class else 0.0,
        "per_class": per_class,
        "num_samples": n,
        "unreadable": pred["index"][~ok].tolist(),
    }


def extract_features(fabric, model, dl: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Video embeddings [N, D] (before the head) and labels [N], in sample order, on every rank."""
    inner = unwrap(model)
    allr = _per_sample(fabric, model, dl, inner.encode, inner.head.weight.shape[1])
    allr = allr[allr[:, 2] < 0]  # unreadable samples give no feature
    return allr[:, 3:].float(), allr[:, 1].long()


def split_features(model, src, split: str, frames: int, workers: int = 0, test_scale: float = 1.0):
    """(features [N, D], labels [N]) of one split of a resolved data source through `model`
    (one view, one CPU process): for analyses of a model's features, such as the toy world's
    premise checks."""
    from lightning_fabric import Fabric

    from tkvr.data.loader import eval_loader, eval_set
    from tkvr.model import preprocess_of

    fabric = Fabric(accelerator="cpu", devices=1)
    ds = eval_set(src.split(split), src, frames, preprocess_of(model), "1x1", "auto", "cpu", test_scale)
    return extract_features(fabric, model, eval_loader(fabric, ds, 32, workers))


def halves(num_classes: int, seed: int, n: int = HALVES) -> list[list[int]]:
    """n distinct random halves of range(num_classes), seeded (the half-class protocol)."""
    if num_classes < 2:
        raise TkvrError(f"--protocol half needs at least 2 eval classes, got {num_classes}")
    out, seen, rng = [], set(), random.Random(seed)
    tries = 0
    while len(out) < n and tries < 1000:
        h = tuple(sorted(rng.sample(range(num_classes), num_classes // 2)))
        tries += 1
        if h not in seen:
            seen.add(h)
            out.append(list(h))
    return out


def protocol_top1(pred: dict, num_classes: int, protocol: str, seed: int) -> dict:
    """top-1 over all classes (full), or mean ± std over seeded random halves of them (half)."""
    n = int((pred["bad"] < 0).sum())
    if protocol == "full":
        return {"top1": metrics(pred, num_classes)["top1"], "num_samples": n}
    tops = [metrics(pred, num_classes, keep=h)["top1"] for h in halves(num_classes, seed)]
    return {"top1": statistics.fmean(tops), "std": statistics.pstdev(tops), "halves": tops, "num_samples": n}


@torch.no_grad()
def model_cost(model, frames: int, size: int, device="cpu") -> tuple[float, float]:
    """(GFLOPs of one view, parameters in millions), the paper's Tables 7 and 12. FLOPs are torch's
    count of matrix products and convolutions, 2 per multiply-add (halve them for the
    multiply-accumulate convention of many video papers); counted in training mode, where
    attention runs through operations the counter sees (its fused inference path does not)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention(query, key, value, *args, **kwargs) -> int:  # the counter passes shapes
        # torch counts the CUDA attention kernels but not the CPU one: the same two matrix products
        return sdpa_flop_count(query, key, value)

    inner = unwrap(model)
    was = inner.training
    inner.train()
    inner.head.eval()  # a learned prompt's classifier is computed once, not per view
    try:
        with FlopCounterMode(
            display=False,
            custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention},
        ) as counter:
            inner(torch.zeros(1, frames, 3, size, size, device=device))  # one view [1, T, 3, S, S]
    finally:
        inner.train(was)
    # parameters at inference: a learned prompt's frozen text tower only made its classifier
    params = sum(p.numel() for n, p in inner.named_parameters() if not n.startswith("head.tower."))
    if not isinstance(inner.head.weight, torch.nn.Parameter):  # a classifier kept as a buffer
        params += inner.head.weight.numel()
    return counter.get_total_flops() / 1e9, params / 1e6


def paper_cost(visual, frames: int) -> tuple[float, float] | None:
    """(GFLOPs of one view, parameters in millions) in the convention of the paper's Tables 7 and
    12, or None for a visual encoder that is not a CLIP ViT. The paper's figures are reproduced
    by counting multiply-accumulates of the patch embedding and of the MLP linears of every block
    only (attention, norms, the temporal module and the head left out), and the parameters of
    the same layers: ViT-B/16 @224 -> 11.3 G, 57.3 M; ViT-L/14 @224 -> 51.9 G, 202.1 M; @336 ->
    116.5 G. Counted from the layers' shapes; the token count is the model's own (its position
    table), so a view is `frames` images at the model's input size."""
    from torch import nn

    patch = getattr(visual, "conv1", None)
    pos = getattr(visual, "positional_embedding", None)
    if not isinstance(patch, nn.Conv2d) or not hasattr(visual, "transformer") or pos is None:
        return None
    tokens = pos.shape[0]  # patches (+ the class token)
    patches = tokens - (1 if getattr(visual, "class_embedding", None) is not None else 0)
    mlp = [
        m for n, m in visual.transformer.named_modules() if isinstance(m, nn.Linear) and ".mlp." in f".{n}."
    ]
    kh, kw = patch.kernel_size
    macs = patches * patch.in_channels * kh * kw * patch.out_channels  # the patch embedding
    macs += tokens * sum(m.in_features * m.out_features for m in mlp)
    params = sum(p.numel() for m in [patch, *mlp] for p in m.parameters())
    return frames * macs / 1e9, params / 1e6


def costs(model, frames: int, size: int, device="cpu") -> dict:
    """Both conventions of a model's cost: tkvr's full count (`gflops_per_view`, `params_m`)
    and the paper's (`gflops_per_frame_paper`, `gflops_per_view_paper` = frames x that,
    `params_m_paper`; None where it does not apply). The paper quotes ViT-B/16 as 11.3 GFLOPs:
    one frame; its 32-frame ViT-L/14 row is 32 x 51.9 = 1662 GFLOPs a view."""
    gflops, params = model_cost(model, frames, size, device)
    inner = unwrap(model)
    paper = paper_cost(inner.visual, frames)
    return {
        "gflops_per_view": gflops,
        "params_m": params,
        "gflops_per_frame_paper": round(paper[0] / frames, 1) if paper else None,
        "gflops_per_view_paper": round(paper[0], 1) if paper else None,
        "params_m_paper": round(paper[1], 1) if paper else None,
    }


def resolved_auto(cfg) -> dict:
    """What the automatic settings become on this machine (shown by --dry-run; the run itself
    records the precision once Fabric is launched)."""
    from tkvr.data.loader import augment_on, workers_for
    from tkvr.launch import resolve_precision

    cuda = torch.cuda.is_available()
    world = cfg.device.world
    return {
        "precision": resolve_precision(
            cfg.device.precision, cfg.device.accelerator, cuda, cuda and torch.cuda.is_bf16_supported()
        ),
        "workers": workers_for(cfg.data.workers, cfg.device.devices),
        "augment": augment_on(cfg),
        "device_batch": cfg.optim.device_batch or cfg.optim.batch_size // world,
        "accumulation": cfg.optim.accumulation(world),
    }


def cost_of(cfg, num_classes: int) -> dict:
    """Both conventions of the cost of one view of the model a config describes (tkvr's full
    count and the paper's), counted on an architecture without weights or storage."""
    from tkvr.heads import Head
    from tkvr.model import TimmVisual, build_backbone, video_model

    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained, meta=True)
    with torch.device("meta"):
        visual = (
            TimmVisual(m.visual, False, None if m.head == "learned" else backbone.dim) if m.visual else None
        )
        width = visual.output_dim if visual is not None else backbone.dim
        # a placeholder of the head's shape: a learned prompt or an online tower also scores
        # against a [C, D] matrix at inference
        head = Head(torch.zeros(num_classes, width), "learned" if m.head == "learned" else "text")
        model = video_model(backbone, m, head, visual)
    size = (visual.preprocess_cfg if visual is not None else backbone.preprocess)["size"]
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    cost = costs(model, m.frames, size, "meta")
    return {k: round(v, 3) if k in ("gflops_per_view", "params_m") else v for k, v in cost.items()}


def evaluate_checkpoint(cfg, fabric=None) -> dict:
    """Score a checkpoint on a split (cfg: EvalConfig): the report `tkvr eval` shows and writes.
    Data, root and fold default to the checkpoint's; other classes than the checkpoint's need
    --labels data (their names are embedded and swapped in)."""
    from tkvr.checkpoint import load_model, read_checkpoint
    from tkvr.data.loader import eval_loader, eval_set
    from tkvr.data.specs import resolve
    from tkvr.data.transforms import input_size
    from tkvr.data.video import pick_decoder
    from tkvr.launch import make_fabric
    from tkvr.model import preprocess_of

    cfg.validate()
    ckpt = read_checkpoint(cfg.checkpoint)
    trained = ckpt["config"]["data"]
    s = cfg.source
    fold = s.fold_or(trained["fold"] or 1)  # unset: the fold the checkpoint was trained on
    src = resolve(s.data or trained["data"], s.data_root or trained["data_root"], fold)
    classes = None
    if src.classes != ckpt["classes"]:
        if cfg.labels != "data":
            raise TkvrError(
                f"--data {src.name}: its {len(src.classes)} classes differ from the checkpoint's "
                f"{len(ckpt['classes'])}; pass --labels data to embed the data's class names with "
                "the checkpoint's text encoder (zero-shot)"
            )
        classes = src.classes
    if cfg.dry_run:
        return eval_plan(cfg, ckpt, src, fold)
    tcfg, _, model = load_model(ckpt, classes)
    decoder = pick_decoder(s.decoder)
    fabric = fabric or make_fabric(cfg.device)
    model = fabric.setup_module(model)
    # unset: as the checkpoint's run validated (runs before these settings: their old behaviour)
    test_scale = cfg.test_scale if cfg.test_scale is not None else tcfg.data.test_scale
    average = cfg.view_average or tcfg.data.view_average
    ds = eval_set(
        src.split(cfg.split),
        src,
        tcfg.model.frames,
        preprocess_of(model),
        cfg.views,
        decoder,
        s.decode_device,
        test_scale,
    )
    m = evaluate(
        fabric, model, eval_loader(fabric, ds, cfg.batch_size, s.workers), len(src.classes), None, average
    )
    cost = costs(model, tcfg.model.frames, input_size(preprocess_of(model)), fabric.device)
    return {
        "top1": m["top1"],
        "top5": m["top5"],
        "mean_class_accuracy": m["mean_class_accuracy"],
        "num_samples": m["num_samples"],
        "views": cfg.views,
        **cost,
        "test_scale": test_scale,
        "view_average": average,
        "split": cfg.split,
        "data": src.name,
        "fold": fold,
        "checkpoint": ckpt["path"],
        "precision": cfg.device.precision,
        "per_class": {src.classes[c]: acc for c, acc in m["per_class"].items()},
        "unreadable": [ds.samples[i].path for i in m["unreadable"]],
    }


def eval_plan(cfg, ckpt: dict, src, fold: int) -> dict:
    """eval --dry-run: the checkpoint's settings, what this evaluation would use, and the cost."""
    from tkvr.checkpoint import config_of

    tcfg = config_of(ckpt)
    return {
        **tcfg.to_dict(),
        "auto": resolved_auto(tcfg),
        "eval": {
            "checkpoint": ckpt["path"],
            "data": src.name,
            "split": cfg.split,
            "fold": fold,
            "samples": len(src.split(cfg.split)),
            "views": cfg.views,
            "test_scale": cfg.test_scale if cfg.test_scale is not None else tcfg.data.test_scale,
            "view_average": cfg.view_average or tcfg.data.view_average,
            "logit_scale": float(ckpt["model"]["head.logit_scale"].exp())
            if "head.logit_scale" in ckpt["model"]
            else None,
        },
        "cost": cost_of(tcfg, len(src.classes)),
    }


def predictions(where: str, workers: int = 0, batch: int = 32):
    """Scores of a run's checkpoint on its own validation split (one view, one CPU process):
    -> (predict_scores dict, data source). For benchmarks and tests that need more than top-1."""
    from lightning_fabric import Fabric

    from tkvr.checkpoint import load_model, read_checkpoint
    from tkvr.data.loader import datasets, loader
    from tkvr.data.specs import resolve
    from tkvr.model import preprocess_of

    cfg, _, model = load_model(read_checkpoint(where))
    src = resolve(cfg.data.data, cfg.data.data_root, cfg.data.fold_or())
    _, val = datasets(cfg, src, preprocess_of(model))
    return predict_scores(
        Fabric(accelerator="cpu", devices=1), model, loader(val, batch, False, workers, 0, 0, 1)
    ), src
