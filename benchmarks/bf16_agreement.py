"""What bf16 autocast costs a CPU's scores: `tkvr predict` in float32 and in bf16-mixed on the
same inputs, every class's score kept (--top-k all), compared input by input.

    python benchmarks/bf16_agreement.py [--checkpoint RUN] [--videos DIR] [--backbone ViT-B/16]

  toy CLIP      the toy CLIP zero-shot (TAP over 8 frames) on the toy world's 216 val clips
  --checkpoint  a trained run (e.g. `tkvr train --data toy --out RUN`) on the same clips
  --videos      every video in DIR, zero-shot with --backbone at random weights (--pretrained
                none: no download) against the 400 Kinetics names: near-uniform scores, the hardest
                case for agreement, and no statement about a trained model

same top-1: inputs whose first label is the same in both; largest difference: the largest
|score_fp32 - score_bf16| over every input and class (softmax scores, 0-1).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from tkvr.commands.predict import PredictConfig
from tkvr.data.specs import resolve
from tkvr.data.video import VIDEO_EXTS
from tkvr.run.auto import native_bf16
from tkvr.run.predict import predict


def scores(cfg: dict, precision: str) -> dict[str, dict[str, float]]:
    rows = predict(PredictConfig(**cfg, precision=precision, accelerator="cpu", top_k=10_000))
    return {r["file"]: dict(zip(r["labels"], r["scores"])) for r in rows if "labels" in r}


def compare(cfg: dict) -> tuple[int, int, float, float]:
    """(same top-1, inputs, largest score difference, median fp32 margin of the first two labels)."""
    a, b = scores(cfg, "32-true"), scores(cfg, "bf16-mixed")
    same = sum(max(a[f], key=a[f].get) == max(b[f], key=b[f].get) for f in a)
    diff = max(abs(a[f][c] - b[f][c]) for f in a for c in a[f])
    margins = sorted(sorted(s.values())[-1] - sorted(s.values())[-2] for s in a.values())
    return same, len(a), diff, margins[len(margins) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--videos")
    ap.add_argument("--backbone", default="ViT-B/16")
    a = ap.parse_args()
    toy = resolve("toy")
    val = [s.path for s in toy.split("val")]
    cases = [("toy CLIP, zero-shot", f"toy val ({len(val)})", dict(files=val, backbone="toy", labels=",".join(toy.classes)))]
    if a.checkpoint:
        cases.append((f"trained run {a.checkpoint}", f"toy val ({len(val)})", dict(files=val, checkpoint=a.checkpoint)))
    if a.videos:
        real = sorted(p.path for p in os.scandir(a.videos) if os.path.splitext(p.name)[1].lower() in VIDEO_EXTS)
        cases.append((f"{a.backbone}, random weights, zero-shot", f"real clips ({len(real)})",
                      dict(files=real, backbone=a.backbone, pretrained="none", labels="k400")))
    rows = [(name, inputs, *compare(cfg)) for name, inputs, cfg in cases]
    print(f"# {platform.node()}: native bf16 {native_bf16() or 'none'}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), 1 view, 8 frames")
    print("| model | inputs | same top-1 | share | largest score difference | median top-1 margin (fp32) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, inputs, same, n, diff, margin in rows:
        print(f"| {name} | {inputs} | {same} of {n} | {100 * same / n:.1f}% | {diff:.4f} | {margin:.4f} |")


if __name__ == "__main__":
    main()
