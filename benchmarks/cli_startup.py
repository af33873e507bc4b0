"""Start-up time of the CLI: `tkvr --help` and `tkvr <cmd> --help` must not import torch.

    python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    exe = shutil.which("tkvr") or f"{sys.executable} -m tkvr"
    print("| command | median s | max s | runs |\n|---|---:|---:|---:|")
    for cmd in ("--help", "train --help", "eval --help", "embed --help"):
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(f"{exe} {cmd}", shell=True, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        print(f"| tkvr {cmd} | {statistics.median(times):.3f} | {max(times):.3f} | {args.runs} |")


if __name__ == "__main__":
    main()
