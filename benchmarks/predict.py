"""Folder prediction against eval on the same clips and model, and the timeline's cost per minute
of video.

    python benchmarks/predict.py [--backbone toy] [--videos DIR] [--workers 1] [--batch 16] [--repeats 3]

  eval          what `tkvr eval` runs: the eval loader (ClipDataset, one view) and predict_scores
  predict       what `tkvr predict FOLDER --out rows.csv` runs after the model is built: the same
                dataset and loader, top-k rows written and fsynced after every batch
  predict cmd   the whole `tkvr predict` call, model building and input search included
  timeline      `--window 2 --stride 1` over a long video (toy clips back to back, or the first
                file of --videos repeated), read once front to back; seconds per minute of video

Clips: the toy world's 216 val clips, or every video in --videos. The model is the --backbone's
pre-trained one with a text head of the toy classes (zero-shot), on the CPU unless CUDA is there.
Each figure is the median over --repeats passes, the ways taking turns.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning_fabric import Fabric

from tkvr.commands.predict import PredictConfig
from tkvr.data.loader import ClipDataset, Scoring, eval_loader, loader
from tkvr.data.specs import Sample, resolve
from tkvr.data.toy import write_video
from tkvr.data.transforms import EvalTransform
from tkvr.data.video import VIDEO_EXTS, Reading, open_reader
from tkvr.model.video_model import preprocess_of
from tkvr.run.auto import decoder as pick_decoder
from tkvr.run.metrics import predict_scores
from tkvr.run.predict import Rows, Score, _whole, predict, scorer


def clips(videos: str | None) -> list[str]:
    if videos:
        return sorted(str(p) for p in Path(videos).rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    return [s.path for s in resolve("toy").split("val")]


def long_video(paths: list[str], seconds: float, out: Path) -> Path:
    """Clips back to back (repeated) until `seconds` of video at 8 frames per second."""
    parts, n = [], 0
    while n < seconds * 8:
        r = open_reader(paths[len(parts) % len(paths)], "pyav")
        parts.append(r.read(list(range(len(r)))))
        r.close()
        n += len(parts[-1])
    h = min(p.shape[-2] for p in parts)
    w = min(p.shape[-1] for p in parts)
    write_video(torch.cat([p[..., :h, :w] for p in parts])[: int(seconds * 8)], out, fps=8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="toy")
    ap.add_argument("--videos")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=1.0, help="length of the timeline's video")
    a = ap.parse_args()

    paths = clips(a.videos)
    labels = ",".join(resolve("toy").classes)
    base = dict(backbone=a.backbone, labels=labels, frames=a.frames, workers=a.workers, batch_size=a.batch)
    cfg = PredictConfig(files=paths, **base)
    model, classes, frames, scale, _ = scorer(cfg, paths, None)
    fabric = Fabric(accelerator="auto", devices=1)
    model = fabric.setup_module(model)
    decoder = pick_decoder("auto", quiet=True)

    def dataset():
        tf = EvalTransform(preprocess_of(model), 1, scale)
        return ClipDataset([Sample(p, -1) for p in paths], frames, tf, Reading(decoder), Scoring(warn=False))

    def run_eval():
        predict_scores(fabric, model, eval_loader(fabric, dataset(), a.batch, a.workers))

    def run_predict():
        with tempfile.TemporaryDirectory() as d:
            rows = Rows(str(Path(d) / "rows.csv"), 5, False, False)
            score = Score(model, fabric, classes, 5)
            for _ in _whole(loader(dataset(), a.batch, False, a.workers, 0, 0, 1), paths, score, rows):
                pass
            rows.close()

    def run_command():
        with tempfile.TemporaryDirectory() as d:
            predict(PredictConfig(files=paths, out=str(Path(d) / "rows.csv"), **base))

    times = {"eval": [], "predict": [], "predict cmd": []}
    for _ in range(a.repeats):
        for name, fn in (("eval", run_eval), ("predict", run_predict), ("predict cmd", run_command)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as d:
        video = long_video(paths, a.minutes * 60, Path(d) / "long.mp4")
        line = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            r = predict(PredictConfig(files=[str(video)], window=2.0, stride=1.0, **base))
            line.append(time.perf_counter() - t)
        windows = len(r[0]["windows"])

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {platform.node()} ({device}), torch {torch.__version__}, decoder {decoder}, backbone {a.backbone}, "
          f"{len(paths)} clips, {frames} frames, batch {a.batch}, workers {a.workers}, median of {a.repeats}")
    print(f"{'way':<14}{'clips/s':>10}{'vs eval':>10}")
    rate = {k: len(paths) / statistics.median(v) for k, v in times.items()}
    for k, v in rate.items():
        print(f"{k:<14}{v:>10.1f}{100 * v / rate['eval']:>9.0f}%")
    per_min = statistics.median(line) / a.minutes
    print(f"timeline: {a.minutes:g} min of video, window 2 s, stride 1 s: {windows} windows, "
          f"{per_min:.1f} s per minute of video (model load included)")


if __name__ == "__main__":
    main()
