"""Evaluation cost of multi-view testing: clips/s at 1x1 and 4x3 views on the same videos.

    python benchmarks/eval_views.py [--backbone tiny] [--frames 8] [--videos 120]

Runs tkvr's evaluation path (ClipDataset -> DataLoader -> predict_scores) on the toy world's
validation videos; then times the eval resize alone at real frame sizes, bicubic against bilinear. A 4x3 evaluation reads the frames of its 4 temporal clips with one decoder
call per video and pushes all 12 views of a video through the model in one batch, so it should
cost about 12x the model work of 1x1 and at most that in time.
"""

from __future__ import annotations

import argparse
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--videos", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    import open_clip
    import torch
    from lightning_fabric import Fabric

    from tkvr.data.loader import ClipDataset, Scoring, loader
    from tkvr.data.settings import parse_views
    from tkvr.data.specs import resolve
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import Reading
    from tkvr.model.backbones import build_backbone
    from tkvr.model.heads import Head, random_matrix
    from tkvr.model.settings import ModelConfig
    from tkvr.model.video_model import build_model
    from tkvr.run.auto import decoder as pick_decoder
    from tkvr.run.metrics import predict_scores

    src = resolve("toy")
    samples = src.split("val")[: args.videos]
    bb = build_backbone(args.backbone)
    model = build_model(bb, ModelConfig(temporal="tap", frames=args.frames), Head(random_matrix(len(src.classes), bb.dim), "random")).eval()
    pre = dict(open_clip.get_model_preprocess_cfg(model.visual))
    fabric = Fabric(accelerator="cpu", devices=1)
    decoder = pick_decoder("auto", quiet=True)
    times = {}
    for views in ("1x1", "4x3"):
        c, s = parse_views(views)
        ds = ClipDataset(samples, args.frames, EvalTransform(pre, s), Reading(decoder), Scoring(c))
        dl = loader(ds, args.batch, False, args.workers, 0, 0, 1)
        predict_scores(fabric, model, dl, limit=1)  # warm-up
        t = time.perf_counter()
        with torch.no_grad():
            predict_scores(fabric, model, dl)
        times[views] = time.perf_counter() - t
    n = len(samples)
    print(f"{n} toy videos, {args.backbone}, T={args.frames}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"decoder {decoder}")
    print("| views | videos/s | s total |\n|---|---:|---:|")
    for v, t in times.items():
        print(f"| {v} | {n / t:.1f} | {t:.2f} |")
    print(f"\n4x3 / 1x1 time: {times['4x3'] / times['1x1']:.1f}x (12x the views)")
    resize_cost(args.frames)


def resize_cost(frames: int, reps: int = 20):
    """The eval resize alone at real frame sizes (the toy's frames are 64 px): a clip of `frames`
    uint8 frames to a 256-px short side, bicubic (tkvr's eval, the released GroupScale) and
    bilinear (tkvr's eval before the released protocol)."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    print("\n| frame | bilinear ms/clip | bicubic ms/clip | ratio |\n|---|---:|---:|---:|")
    for h, w in ((240, 320), (360, 640), (720, 1280)):
        x = torch.randint(0, 255, (frames, 3, h, w), dtype=torch.uint8)
        ms = {}
        for mode in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
            TF.resize(x, [256], interpolation=mode, antialias=True)
            t = time.perf_counter()
            for _ in range(reps):
                TF.resize(x, [256], interpolation=mode, antialias=True)
            ms[mode] = (time.perf_counter() - t) / reps * 1000
        a, b = ms[InterpolationMode.BILINEAR], ms[InterpolationMode.BICUBIC]
        print(f"| {w}x{h} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
