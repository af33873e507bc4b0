"""SIGTERM at random points of a 2-process CPU DDP training, then `--resume auto` until it ends;
the final weights against an uninterrupted run's. Prints one table.

    python benchmarks/preempt_points.py [--kills 10] [--seed 0] [--signal TERM|USR1] [--work DIR]

Each trial starts `tkvr train ... --accelerator cpu --devices 2 --strategy ddp` (rank 0 starts
rank 1, as Lightning's launcher does), sends the signal to rank 0's process alone (a scheduler
signals every task; one rank is the harder case: the others learn it at the next step) after a
random delay (from 2 s before the uninterrupted run's first step to its end), then checks the exit status (143 for SIGTERM, 138 for SIGUSR1; a kill that lands
before training starts ends the process by the signal's default action), that no process of the
run is alive 10 s later, and reruns with `--resume auto` (a stop during start-up: the same
command) until the run ends; its last.pt must equal the uninterrupted run's, tensor for tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kill_points import alive, descendants  # noqa: E402

TKVR = [sys.executable, "-m", "tkvr"]


def train_cmd(out: Path) -> list[str]:
    return [*TKVR, "train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8",
            "--workers", "1", "--warmup", "0", "--epochs", "3", "--limit-batches", "25", "--limit-val-batches", "1",
            "--log-every", "1", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(out)]


def weights(out: Path) -> dict:
    import torch

    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--signal", default="TERM", choices=("TERM", "USR1"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    sig = getattr(signal, f"SIG{args.signal}")
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="tkvr-preempt-"))
    os.environ.setdefault("TKVR_CACHE", str(work / "cache"))
    import torch

    t0 = time.time()
    ref = work / "uninterrupted"
    p = subprocess.Popen(train_cmd(ref), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None  # when its first step was logged: the signals land from just before it to the end
    while p.poll() is None:
        if first is None and (ref / "steps.csv").is_file() and len((ref / "steps.csv").read_text().split()) > 1:
            first = time.time() - t0
        time.sleep(0.05)
    assert p.returncode == 0
    took = time.time() - t0
    want = weights(ref)
    print(f"work folder: {work}; the uninterrupted run took {took:.1f} s, its first step at {first:.1f} s\n")
    print("| trial | signal after (s) | exit | stopped at | processes alive 10 s after | reruns | "
          "final weights equal |")
    print("|---:|---:|---:|---|---:|---:|---|")
    equal = left_total = 0
    codes = []
    for k in range(args.kills):
        out = work / f"run{k}"
        delay = rng.uniform(first - 2.0, took)
        log = work / f"run{k}.err"  # a file, not a pipe: a rank left running must not hold the benchmark
        p = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        start, seen = time.time(), set()
        while time.time() - start < delay and p.poll() is None:
            seen.update(descendants(p.pid))
            time.sleep(0.05)
        seen.update(descendants(p.pid))
        if p.poll() is None:
            p.send_signal(sig)
        p.wait()
        err = log.read_text()
        line = next((x for x in err.splitlines() if x.startswith("tkvr: stopped by")), "")
        where = line.split(" at ", 1)[1].split(";")[0] if line else ("ended first" if p.returncode == 0 else "-")
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(c) for c in seen):
            time.sleep(0.1)
        left = [c for c in seen if alive(c)]
        for c in left:
            os.kill(c, signal.SIGKILL)
        left_total += len(left)
        reruns = 0
        while reruns < 3:
            report = out / "report.json"
            if report.is_file() and not json.loads(report.read_text()).get("interrupted"):
                break
            resume = ["--resume", "auto"] if (out / "checkpoints" / "last.pt").exists() else []
            r = subprocess.run(train_cmd(out) + resume, capture_output=True, text=True)
            reruns += 1
            if r.returncode != 0:
                print(f"|   | rerun exit {r.returncode}: {r.stderr.strip()[-200:]} | | | | | |")
                break
        got = weights(out)
        same = got.keys() == want.keys() and all(torch.equal(got[k2], want[k2]) for k2 in want)
        equal += same
        codes.append(p.returncode)
        print(f"| {k} | {delay:.1f} | {p.returncode} | {where} | {len(left)} | {reruns} | {same} |", flush=True)
    print(f"\n{equal} of {args.kills} equal to the uninterrupted run; {left_total} processes left; exits "
          f"{sorted(set(codes))}")


if __name__ == "__main__":
    main()
