"""Decode speed: 8-frame clips per second over the real clips, three ways.

    python benchmarks/decode.py [--videos DIR] [--frames 8] [--repeats 3]

  torchcodec    tkvr's fast path: one batched get_frames_at call per clip (exact seek mode)
  pyav-seek     tkvr's fallback: PyAV, seeking to the key frame before each wanted frame
  pyav-full     what most research code did: decode every frame with PyAV, then pick T of them

Each clip is opened afresh (as a DataLoader worker does); test-time segment centres.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def naive(path: str, idx: list[int]) -> torch.Tensor:
    import av

    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    return torch.stack([torch.from_numpy(frames[min(i, len(frames) - 1)]) for i in idx])


def main():
    from tkvr.data.sampling import segment_indices
    from tkvr.data.video import VideoFile

    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", default=str(Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = sorted(str(p) for p in Path(args.videos).iterdir())
    counts = {p: len(VideoFile(p, "pyav")) for p in paths}

    def tkvr_read(decoder):
        def read(p, idx):
            v = VideoFile(p, decoder)
            try:
                return v.read(idx)
            finally:
                v.close()
        return read

    ways = {"torchcodec": tkvr_read("torchcodec"), "pyav-seek": tkvr_read("pyav"), "pyav-full": naive}
    print(f"{len(paths)} clips, {args.frames} frames each, {args.repeats} passes; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)")
    rows = {}
    for name, read in ways.items():
        read(paths[0], [0])  # warm-up: loads libraries
        per = {}
        for p in paths:
            idx = segment_indices(counts[p], args.frames, train=False)
            t = time.perf_counter()
            for _ in range(args.repeats):
                read(p, idx)
            per[p] = (time.perf_counter() - t) / args.repeats
        rows[name] = per
    print(f"\n| clip | frames | {' | '.join(f'{w} clips/s' for w in ways)} |")
    print("|---|---:|" + "---:|" * len(ways))
    for p in paths:
        print(f"| {Path(p).name} | {counts[p]} | " + " | ".join(f"{1 / rows[w][p]:.1f}" for w in ways) + " |")
    total = {w: len(paths) / sum(rows[w].values()) for w in ways}
    print("| **all clips** | | " + " | ".join(f"**{total[w]:.1f}**" for w in ways) + " |")
    print(f"\ntorchcodec / pyav-full = {total['torchcodec'] / total['pyav-full']:.1f}x, "
          f"pyav-seek / pyav-full = {total['pyav-seek'] / total['pyav-full']:.1f}x")


if __name__ == "__main__":
    main()
