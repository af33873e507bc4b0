"""Decode speed: 8-frame clips per second over the real clips: three readers, two yardsticks.

    python benchmarks/decode.py [--videos DIR] [--frames 8] [--repeats 3] [--stat median|mean]

  torchcodec    tkvr's fast path: one batched get_frames_at call per clip (exact seek mode); AVIs
                go through PyAV in display order under either decoder (tkvr/data/video.py says why)
  pyav-seek     tkvr's fallback: PyAV, seeking to the key frame before a wanted frame when one lies
                between, skipping unwanted frames that no other frame refers to
  pyav-full     what most research code did: decode every frame with PyAV, then pick T of them
  decode-only   not a reader, a yardstick: FFmpeg (through PyAV, its own threads) decodes the frames
                that an exact reader has to decode -- from the key frame before each run of wanted
                frames up to the last one -- and converts none of them to RGB: what reading a
                clip would cost if conversion were free
  decode-nonref the same, also skipping the non-reference frames that are not wanted

Each clip is opened afresh (as a DataLoader worker does); test-time segment centres; the ways take
turns clip by clip, and each figure is the median (--stat mean: the mean) over the passes. AVIs are
read in display order from the first frame (tkvr/data/video.py says why), so decode-only decodes
them from the start as well.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch


def naive(path: str, idx: list[int]) -> torch.Tensor:
    import av

    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    return torch.stack([torch.from_numpy(frames[min(i, len(frames) - 1)]) for i in idx])


def decode_only(path: str, idx: list[int], nonref: bool = False) -> int:
    """Decode what an exact reader must, convert nothing; returns the number of frames decoded.
    nonref: also skip the unwanted non-reference frames, as tkvr's PyAV reader does. Not for AVIs:
    which packet holds a wanted frame is only known there after decoding."""
    import bisect

    import av

    from tkvr.data.video import _av_frame_pts, _av_frames

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if path.lower().endswith(".avi"):
            for n, _ in enumerate(c.decode(s)):
                if n >= max(idx):
                    return n + 1
        pts, keys = _av_frame_pts(c)
        where = {t: i for i, t in enumerate(pts)}
        skip = set(pts) - {pts[i] for i in idx} if nonref else set()
        n, at, frames = 0, None, None
        for i in sorted(set(idx)):
            key = keys[max(0, bisect.bisect_right(keys, i) - 1)]
            if at is None or key > at:  # a key frame lies between: seeking skips decoding
                c.seek(pts[key], stream=s, backward=True)
                frames = _av_frames(c, s, skip)
            for f in frames:
                n += 1
                at = where.get(f.pts, at)
                if f.pts == pts[i]:
                    break
        return n


def main():
    from tkvr.data.sampling import segment_indices
    from tkvr.data.video import VideoFile

    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", default=str(Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stat", choices=("median", "mean"), default="median", help="over the passes")
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

    ways = {"torchcodec": tkvr_read("torchcodec"), "pyav-seek": tkvr_read("pyav"), "pyav-full": naive,
            "decode-only": decode_only, "decode-nonref": lambda p, idx: decode_only(p, idx, nonref=True)}
    print(f"{len(paths)} clips, {args.frames} frames each, {args.repeats} passes; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)")
    for read in ways.values():
        read(paths[0], [0])  # warm-up: loads libraries
    # Interleaved (every way reads every clip once per pass), median over passes: a slow spell of a
    # shared machine then hits all ways alike instead of one, and one outlier does not count.
    times = {w: {p: [] for p in paths} for w in ways}
    for _ in range(args.repeats):
        for p in paths:
            idx = segment_indices(counts[p], args.frames, train=False)
            for name, read in ways.items():
                t = time.perf_counter()
                read(p, idx)
                times[name][p].append(time.perf_counter() - t)
    rows = {w: {p: getattr(statistics, args.stat)(ts) for p, ts in per.items()} for w, per in times.items()}
    print(f"\n| clip | frames | {' | '.join(f'{w} clips/s' for w in ways)} |")
    print("|---|---:|" + "---:|" * len(ways))
    for p in paths:
        print(f"| {Path(p).name} | {counts[p]} | " + " | ".join(f"{1 / rows[w][p]:.1f}" for w in ways) + " |")
    total = {w: len(paths) / sum(rows[w].values()) for w in ways}
    print("| **all clips** | | " + " | ".join(f"**{total[w]:.1f}**" for w in ways) + " |")
    print("\n" + ", ".join(f"{w} / pyav-full = {total[w] / total['pyav-full']:.2f}x"
                           for w in ("torchcodec", "pyav-seek", "decode-only", "decode-nonref")))


if __name__ == "__main__":
    main()
