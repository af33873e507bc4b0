"""Scores and metrics: softmax scores averaged over views, top-1/top-5/mean class accuracy, the
half-class protocol, feature extraction.

Under DDP every rank scores its share of the samples (rank::world, no padding) and the rows are
gathered, so each sample counts exactly once whatever the number of processes.
"""

from __future__ import annotations

import random
import statistics

import torch
from torch.utils.data import DataLoader

from tkvr.base.errors import TkvrError
from tkvr.model.video_model import unwrap

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
def _per_sample(
    fabric, model, dl: DataLoader, out, width: int, limit: int | None = None, tick=None
) -> torch.Tensor:
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
        if tick is not None:
            tick()
    model.train()
    local = torch.cat(rows) if rows else torch.zeros(0, 3 + width, dtype=torch.float64)
    return _gather_rows(fabric, local)


def predict_scores(
    fabric, model, dl: DataLoader, limit: int | None = None, average: str = "features", tick=None
) -> dict:
    """Softmax scores of every sample over its views, each sample once across ranks.
    average features: the views' video embeddings are averaged, then scored (the released
    test.py at 238c07f); scores: each view is scored and the softmax scores are averaged.
    Returns index [N], label [N], bad [N] (>= 0: unreadable), scores [N, C], in sample order."""
    inner = unwrap(model)
    if average == "scores":
        allr = _per_sample(
            fabric, model, dl, lambda x: model(x).float().softmax(-1), inner.head.num_classes, limit, tick
        )
        scores = allr[:, 3:].float()
    else:

        def embed(x):  # the module itself, under the precision the Fabric wrapper would apply
            with fabric.autocast():
                return inner.embed(x)

        allr = _per_sample(fabric, model, dl, embed, inner.head.weight.shape[1], limit, tick)  # [N, 3 + D]
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
    fabric,
    model,
    dl: DataLoader,
    num_classes: int,
    limit: int | None = None,
    average: str = "features",
    tick=None,
) -> dict:
    """Metrics of `model` on `dl`; `tick()` after every batch (a progress bar)."""
    return metrics(predict_scores(fabric, model, dl, limit, average, tick), num_classes)


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
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)  # [true, top-1 predicted]
    if n:
        confusion.index_put_((labels, top[:, 0]), torch.ones(n, dtype=torch.long), accumulate=True)
    return {
        "top1": 100.0 * hit1.float().mean().item() if n else 0.0,
        "top5": 100.0 * hit5.float().mean().item() if n else 0.0,
        "mean_class_accuracy": sum(per_class.values()) / len(per_class) if per_class else 0.0,
        "per_class": per_class,
        "num_samples": n,
        "unreadable": pred["index"][~ok].tolist(),
        "confusion": confusion,
    }


def extract_features(fabric, model, dl: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Video embeddings [N, D] (before the head) and labels [N], in sample order, on every rank."""
    inner = unwrap(model)
    allr = _per_sample(fabric, model, dl, inner.encode, inner.head.weight.shape[1])
    allr = allr[allr[:, 2] < 0]  # unreadable samples give no feature
    return allr[:, 3:].float(), allr[:, 1].long()


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
    return {"top1": statistics.fmean(tops), "std": statistics.stdev(tops), "halves": tops, "num_samples": n}
