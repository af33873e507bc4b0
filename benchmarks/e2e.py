"""End-to-end training speed against the compute-bound step, before and after `tkvr prepare`.

    python benchmarks/e2e.py                                   # the real clips, tiny backbone, CPU
    python benchmarks/e2e.py --backbone ViT-B-16 --batch 32 --precision bf16-mixed --steps 100

One run, one machine, three rates in clips/s, each sustained (the first --skip steps, start-up
and the first fill of the prefetch queue, are left out; many more steps follow than the queue
holds):
  compute    the same model's training step on synthetic clips already in memory
             (benchmarks/train_step.py's loop): what the data would have to keep up with;
  original   `tkvr train` on the dataset as it is;
  prepared   `tkvr train` on the same dataset after `tkvr prepare` (short GOPs, short side 320).
Each train run reads its rate and the loader's share of the time (the host waiting for a batch)
from its steps.csv (wall_s, data_wait_s). Without --data, a list of --samples clips is built by
repeating the real Kinetics and UCF clips in ../shared/realdata/videos.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos"
CLIPS = ["k400_arm_wrestling_mmaction2_demo.mp4", "k400_cleaning_pool_mmaction2_test.mp4",
         "k400_flipping_a_pancake.mkv", "ucf101_ApplyEyeMakeup_mmaction2_test.avi"]


def real_list(folder: Path, samples: int, real: Path = REAL) -> Path:
    """A list-file dataset repeating the real clips: `samples` training rows, 4 validation rows."""
    missing = [c for c in CLIPS if not (real / c).is_file()]
    if missing:
        sys.exit(f"e2e: {real / missing[0]} not found; pass --data or --clips")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(len(CLIPS))))
    (folder / "train.txt").write_text("".join(f"{real / CLIPS[i % len(CLIPS)]} {i % len(CLIPS)}\n"
                                              for i in range(samples)))
    (folder / "val.txt").write_text("".join(f"{real / c} {i}\n" for i, c in enumerate(CLIPS)))
    return folder


def tkvr(*args) -> None:
    r = subprocess.run([sys.executable, "-m", "tkvr", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode:
        sys.exit(f"e2e: tkvr {args[0]} failed:\n{r.stderr[-2000:]}")


def sustained(run: Path, batch: int, skip: int) -> tuple[float, float]:
    """(clips/s, share of time the loop waited for data) between step `skip` and the last step."""
    rows = [r for r in csv.DictReader((run / "steps.csv").open()) if r.get("wall_s")]
    a, b = next(r for r in rows if int(r["step"]) >= skip), rows[-1]
    wall = float(b["wall_s"]) - float(a["wall_s"])
    steps = int(b["step"]) - int(a["step"])
    return batch * steps / wall, (float(b["data_wait_s"]) - float(a["data_wait_s"])) / wall


def train_rate(data, args, out: Path) -> tuple[float, float]:
    tkvr("train", "--data", data, "--backbone", args.backbone, "--pretrained", args.pretrained, "--frames",
         args.frames, "--batch-size", args.batch, "--workers", args.workers, "--precision", args.precision,
         "--decoder", args.decoder, "--epochs", 1000, "--eval-every", 1000, "--max-steps", args.steps,
         "--log-every", 1, "--warmup", 0, "--out", out)
    return sustained(out, args.batch, args.skip)


def compute_rate(args) -> float:
    """train_step.py's tkvr loop on synthetic clips: the rate the data must keep up with."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from train_step import timed, tkvr_step

    ns = argparse.Namespace(backbone=args.backbone, pretrained=args.pretrained, frames=args.frames, batch=args.batch,
                            temporal="tap", grad_ckpt=False, compile=False, accelerator="auto",
                            precision="32-true" if args.precision == "auto" and not torch.cuda.is_available()
                            else ("bf16-mixed" if args.precision == "auto" else args.precision))
    step, *_ , fabric = tkvr_step(ns, 4)
    sync = torch.cuda.synchronize if fabric.device.type == "cuda" else (lambda: None)
    return args.batch / timed(step, max(5, args.steps - args.skip), 3, sync)


def fidelity(data, prepared: Path, videos: int = 8) -> str:
    """Disk size of the sources and of their prepared copies, and the PSNR of 16 frames per video
    (where the copy kept the size: the short side was at most --short-side)."""
    import torch

    from tkvr.data.specs import resolve
    from tkvr.data.video import VideoFile, kind_of
    from tkvr.run.prepare import target

    sources = sorted({x.path for xs in resolve(str(data)).splits.values() for x in xs if kind_of(x.path) == "video"})
    size_in = sum(os.path.getsize(p) for p in sources)
    size_out = sum(os.path.getsize(target(prepared / "videos", p)) for p in sources)
    psnr = []
    for p in sources[:videos]:
        a, b = VideoFile(p, "pyav"), VideoFile(target(prepared / "videos", p), "pyav")
        idx = list(range(0, len(a), max(1, len(a) // 16)))
        x, y = a.read(idx).float(), b.read(idx).float()
        if x.shape == y.shape:
            psnr.append(10 * torch.log10(255.0 ** 2 / ((x - y) ** 2).mean()).item())
    return (f"{len(sources)} source videos {size_in / 1e6:.2f} MB -> prepared {size_out / 1e6:.2f} MB "
            f"({size_out / size_in:.2f}x); PSNR of the copies {min(psnr):.1f}-{max(psnr):.1f} dB" if psnr else "")


def gpu_utilisation() -> str:
    try:
        import torch

        return f"{torch.cuda.utilization()}%" if torch.cuda.is_available() else "n/a (CPU)"
    except Exception:  # noqa: BLE001 - needs pynvml; not everywhere
        return "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="dataset to train on [default: the real clips repeated]")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--clips", default=str(REAL), help="folder holding the real clips [default: ../shared/realdata/videos]")
    ap.add_argument("--json", default=None, help="also write the rates here")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=8, help="first steps left out (start-up, queue fill)")
    ap.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 1) - 1))
    ap.add_argument("--decoder", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--short-side", type=int, default=320)
    ap.add_argument("--work", default=None, help="folder for the runs [default: a temporary one]")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tkvr-e2e-"))
    data = args.data or real_list(work / "data", args.samples, Path(args.clips).resolve())
    t = time.perf_counter()
    tkvr("prepare", "--data", data, "--out", work / "prepared", "--short-side", args.short_side)
    prep_s = time.perf_counter() - t
    compute = compute_rate(args)
    orig, orig_wait = train_rate(data, args, work / "run_original")
    prep, prep_wait = train_rate(work / "prepared", args, work / "run_prepared")
    import platform

    import torch

    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.machine()}, " \
        f"{os.cpu_count()} cores"
    print(f"{args.backbone}, T={args.frames}, batch {args.batch}, {args.steps} steps (first {args.skip} left out), "
          f"{args.workers} workers, decoder {args.decoder}, on {where}; prepare took {prep_s:.0f} s")
    print("| rate | clips/s | of compute-bound | loader wait | GPU use |\n|---|---:|---:|---:|---:|")
    print(f"| compute-bound step (synthetic clips) | {compute:.1f} | 100% | - | - |")
    for name, rate, wait in (("tkvr train, original", orig, orig_wait), ("tkvr train, prepared", prep, prep_wait)):
        print(f"| {name} | {rate:.1f} | {100 * rate / compute:.0f}% | {100 * wait:.0f}% | {gpu_utilisation()} |")
    print(f"prepared / original: {prep / orig:.2f}x")
    print(fidelity(data, work / "prepared"))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"compute": compute, "original": orig, "prepared": prep,
                                               "original_wait": orig_wait, "prepared_wait": prep_wait,
                                               "device": where, "prepare_s": prep_s}, indent=1))


if __name__ == "__main__":
    main()
