"""`tkvr predict LONG.mp4 --window 4 --stride 2` on long videos made from a real clip: wall time
and peak memory (max RSS of the process) per length. Prints one table.

    python benchmarks/long_videos.py [--clip PATH] [--minutes 1,10] [--backbone tiny] [--work DIR]

The videos are the clip looped to the length (`ffmpeg -stream_loop -1 -t SECONDS`, H.264, a key
frame every 2 s, no audio), written once into --work. Each prediction runs as its own process
under /usr/bin/time, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CLIP = HERE.parent / "shared" / "realdata" / "videos" / "k400_arm_wrestling_mmaction2_demo.mp4"


def make(clip: Path, seconds: int, out: Path) -> Path:
    if not out.is_file():
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(clip), "-t",
                        str(seconds), "-an", "-c:v", "libx264", "-preset", "veryfast", "-g", "60", str(out)],
                       check=True)
    return out


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process."""
    r = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    line = next(x for x in r.stderr.splitlines() if x.startswith("TIME "))
    wall, kib = line.split()[1:]
    return float(wall), int(kib) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--minutes", default="1,10")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tkvr-long-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"clip {Path(args.clip).name}, backbone {args.backbone}, work folder {work}\n")
    print("| video | windows | wall (s) | s per video minute | peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for m in (float(x) for x in args.minutes.split(",")):
        video = make(Path(args.clip), int(m * 60), work / f"long_{m:g}min.mp4")
        out = work / f"long_{m:g}min.csv"
        out.unlink(missing_ok=True)
        wall, mib = timed([sys.executable, "-m", "tkvr", "predict", str(video), "--window", "4", "--stride", "2",
                           "--backbone", args.backbone, "--labels", "arm wrestling,cooking,dancing",
                           "--out", str(out)])
        rows = len(out.read_text().splitlines()) - 1
        print(f"| {m:g} min | {rows} | {wall:.1f} | {wall / m:.1f} | {mib:.0f} |", flush=True)


if __name__ == "__main__":
    main()
