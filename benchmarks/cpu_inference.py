"""CPU inference against its bound: the model's forward alone (the yardstick) and `tkvr predict`
end to end, at each precision, in one run.

    python benchmarks/cpu_inference.py --videos DIR [--backbone ViT-B/16] [--frames 8] [--batch 4]
        [--workers N] [--copies 1,3] [--precisions 32-true,bf16-mixed]

  yardstick   the model predict builds (visual encoder, TAP, text head, top-k), on random clips
              already at the model's input size, at the precision, after a warm-up batch: clips/s
  predict     `tkvr predict FOLDER --out rows.csv` as a user runs it (a new process) on the videos
              of --videos, linked into the folder N1 and N2 times (--copies): wall seconds T1, T2
  rate        (N2 - N1) / (T2 - T1): the clips/s predict sustains, decoding, resizing, scoring and
              writing rows included; its ratio to the yardstick is the share of the bound reached
  start-up    T1 - N1 / rate: the command's fixed cost (imports, model build, the readers' start)
  whole       N2 / T2: clips/s of the whole command on the larger folder, start-up included

The model has random weights (--pretrained none): no download, the same arithmetic as the real
one. Each precision's rows are measured one after the other; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tkvr.commands.predict import PredictConfig
from tkvr.data.transforms import input_size
from tkvr.data.video import VIDEO_EXTS
from tkvr.model.video_model import preprocess_of
from tkvr.run.auto import native_bf16
from tkvr.run.launch import make_fabric
from tkvr.run.predict import Score, scorer
from tkvr.run.settings import DeviceConfig


def folder(videos: list[Path], copies: int, root: Path) -> Path:
    """The videos linked `copies` times under root/cN (distinct paths: each is scored)."""
    out = root / f"c{copies}"
    for c in range(copies):
        (out / str(c)).mkdir(parents=True)
        for v in videos:
            (out / str(c) / v.name).symlink_to(v.resolve())
    return out


def yardstick(a, precision: str, n: int) -> float:
    """clips/s of the scoring model alone on n random clips (batches of a.batch)."""
    cfg = PredictConfig(files=["x.mp4"], backbone=a.backbone, pretrained="none", labels=a.labels, frames=a.frames)
    model, classes, frames, _, _ = scorer(cfg, ["x.mp4"], None)
    fabric = make_fabric(DeviceConfig(accelerator="cpu", precision=precision))
    score = Score(fabric.setup_module(model), fabric, classes, 3)
    score.model.eval()
    size = input_size(preprocess_of(model))
    x = torch.randn(a.batch, 1, frames, 3, size, size)  # [B, views, T, 3, H, W]
    score(x)  # warm-up: the first call allocates and picks kernels
    batches = math.ceil(n / a.batch)
    t = time.perf_counter()
    for _ in range(batches):
        score(x)
    return batches * a.batch / (time.perf_counter() - t)


def predict_wall(a, src: Path, precision: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "tkvr", "predict", str(src), "--backbone", a.backbone, "--pretrained", "none",
           "--labels", a.labels, "--frames", str(a.frames), "--batch-size", str(a.batch),
           "--precision", precision, "--out", str(out)]
    if a.workers is not None:
        cmd += ["--workers", str(a.workers)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", required=True)
    ap.add_argument("--backbone", default="ViT-B/16")
    ap.add_argument("--labels", default="a,b,c")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, help="predict's --workers (unset: its default)")
    ap.add_argument("--copies", default="1,3", help="N1,N2 as copies of the videos")
    ap.add_argument("--precisions", default="32-true,bf16-mixed")
    a = ap.parse_args()

    videos = sorted(p for p in Path(a.videos).iterdir() if p.suffix.lower() in VIDEO_EXTS)
    c1, c2 = (int(c) for c in a.copies.split(","))
    n1, n2 = c1 * len(videos), c2 * len(videos)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        small, large = folder(videos, c1, root), folder(videos, c2, root)
        for p in a.precisions.split(","):
            bound = yardstick(a, p, n1)
            t1 = predict_wall(a, small, p, root / f"{p}-1.csv")
            t2 = predict_wall(a, large, p, root / f"{p}-2.csv")
            rate = (n2 - n1) / (t2 - t1)
            rows.append((p, bound, t1, t2, rate, t1 - n1 / rate, n2 / t2))

    print(f"# {platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"native bf16: {native_bf16() or 'none'}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{a.backbone} (random weights), {a.frames} frames, batch {a.batch}, predict --workers "
          f"{'default' if a.workers is None else a.workers}, {len(videos)} videos x {c1} and x {c2}")
    print("| precision | yardstick clips/s | predict T1 (s) | predict T2 (s) | rate clips/s | rate / yardstick "
          "| start-up (s) | whole clips/s | whole / yardstick |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, bound, t1, t2, rate, start, whole in rows:
        print(f"| {p} | {bound:.3f} | {t1:.1f} | {t2:.1f} | {rate:.3f} | {100 * rate / bound:.0f}% | {start:.1f} "
              f"| {whole:.3f} | {100 * whole / bound:.0f}% |")
    if len(rows) == 2:
        print(f"bf16 / float32: yardstick {rows[1][1] / rows[0][1]:.2f}x, predict rate {rows[1][4] / rows[0][4]:.2f}x")


if __name__ == "__main__":
    main()
