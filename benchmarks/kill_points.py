"""Kill -9 at random points of prepare, train, predict and export; then check what was left and
rerun. Prints one table row per command.

    python benchmarks/kill_points.py [--kills 10] [--seed 0] [--work DIR]

Each trial starts the command in its own process, kills it (SIGKILL, the parent only: what a
killed terminal or an out-of-memory killer does) after a random delay, and then checks:
  - whether a process the command started (at any depth: prepare's encoders, the readers' fork
    server, the readers forked from it, the resource tracker) is alive a second later and still
    alive 10 s later (those are then killed), and how many files changed in the output after the
    kill (from 0.2 s after it to 10 s after: a process of the killed run still writing);
  - every file it left reads with tkvr's own readers (checkpoint checksum and structure,
    config.yaml, metrics.csv, --out rows, export's model and sidecar, the prepared videos), and
    no two files come from two runs (a sidecar names its model's sha256; config.yaml's seed is
    the checkpoint's);
  - the same command again (with --resume where it continues) exits 0, lists every readable
    input once, and leaves no temporary file of the killed run behind.
The kills land anywhere from start-up (torch still importing) to the last write.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TKVR = [sys.executable, "-m", "tkvr"]


def descendants(pid: int) -> list[int]:
    """The live processes below `pid`, at any depth (a reader is a child of the fork server)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parent[int(d)] = int(fields[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [], {pid}
    while frontier:
        frontier = {c for c, p in parent.items() if p in frontier}
        out.extend(frontier)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def written_after(folder: Path, t: float) -> int:
    """Files in `folder` (any depth) changed after time t."""
    n = 0
    for where, _, names in os.walk(folder):
        for name in names:
            try:
                n += os.stat(os.path.join(where, name)).st_mtime > t
            except OSError:
                pass
    return n


def kill_after(cmd: list[str], delay: float, out: Path) -> tuple[float, bool, bool, int, int]:
    """-> (seconds it ran, whether it ended by itself first, whether a process it started lived
    more than 1 s after it, how many were still alive 10 s after it, files written in `out` from
    0.2 s after the kill to 10 s after)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    while time.time() - t0 < delay and p.poll() is None:
        seen.update(descendants(p.pid))
        time.sleep(0.05)
    finished = p.poll() is not None
    seen.update(descendants(p.pid))
    if not finished:
        p.send_signal(signal.SIGKILL)
    p.wait()
    killed = time.time()
    deadline = killed + 1.0
    while time.time() < deadline and any(alive(c) for c in seen):
        time.sleep(0.05)
    late = any(alive(c) for c in seen)
    deadline = killed + 10.0  # a reader still starting finds its parent gone and ends unwritten
    while time.time() < deadline and any(alive(c) for c in seen):
        time.sleep(0.1)
    left = [c for c in seen if alive(c)]
    for c in left:
        os.kill(c, signal.SIGKILL)
    wrote = written_after(out, killed + 0.2) if out.exists() else 0
    return killed - t0, finished, late, len(left), wrote


def temporaries(folder: Path) -> list[str]:
    """Temporary files of tkvr's atomic writes (.NAME.XXXXXXXX.SUFFIX) under `folder`."""
    pattern = re.compile(r"\..+\.[a-z0-9_]{8}\.[A-Za-z0-9]+")
    return sorted(
        os.path.relpath(os.path.join(d, n), folder)
        for d, _, names in os.walk(folder)
        for n in names
        if pattern.fullmatch(n)
    )


def rerun(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def check_train(run: Path) -> str | None:
    """Why the run folder left by a kill is inconsistent, or None."""
    from tkvr.base.errors import TkvrError
    from tkvr.base.fileio import read_yaml
    from tkvr.run.checkpoint import read_checkpoint
    from tkvr.run.logs import EPOCH_COLUMNS, STEP_COLUMNS, read_log

    try:
        cfg = read_yaml(run / "config.yaml", "config.yaml") if (run / "config.yaml").exists() else None
        for name in ("last.pt", "best.pt"):
            path = run / "checkpoints" / name
            if path.exists():
                ck = read_checkpoint(str(path), "--resume")
                if cfg is not None and ck["config"]["optim"]["seed"] != cfg["optim"]["seed"]:
                    return f"{name}: seed of another run"
        for name, cols in (("metrics.csv", EPOCH_COLUMNS), ("steps.csv", STEP_COLUMNS)):
            if (run / name).exists():
                read_log(run / name, cols)
    except TkvrError as e:
        return str(e)
    return None


def check_rows(out: Path, inputs: int | None = None) -> str | None:
    if not out.exists():
        return None
    rows = list(csv.DictReader(open(out, newline="")))
    files = [r["file"] for r in rows]
    if len(files) != len(set(files)):
        return "an input has two rows"
    if inputs is not None and len(files) != inputs:
        return f"{len(files)} rows for {inputs} inputs"
    return None


def check_export(out: Path) -> str | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import run_exported

    side = Path(str(out) + ".json")
    if out.exists() and side.exists():
        try:
            run_exported.sidecar(str(out))
        except SystemExit as e:
            return str(e)
    if side.exists() and not out.exists():
        return "a sidecar without its model"
    return None


def check_prepared(out: Path) -> str | None:
    from tkvr.data.video import UnreadableVideo, open_reader

    for f in sorted((out / "videos").glob("*.mp4")) if (out / "videos").exists() else []:
        try:
            r = open_reader(str(f), "pyav")
            r.read([len(r) - 1])
            r.close()
        except UnreadableVideo as e:
            return f"a listed video does not read: {e}"
    return None


def trials(name: str, kills: int, rng: random.Random, work: Path, setup, command, again, check, done):
    ran, bad, orphans, left, reruns, finished, writes = [], [], 0, 0, 0, 0, 0
    for k in range(kills):
        where = work / f"{name}{k}"
        where.mkdir(parents=True)
        setup(where)
        delay = rng.uniform(1.0, 14.0)
        took, ended, orphan, stayed, wrote = kill_after(command(where), delay, where)
        ran.append(took)
        finished += ended
        orphans += orphan
        left += stayed
        writes += wrote
        problem = check(where)
        if problem:
            bad.append(problem)
        r = rerun(again(where))
        ok = r.returncode == 0 and done(where, r)
        reruns += ok
        if not ok:
            bad.append(f"rerun: rc {r.returncode}: {r.stderr.strip()[-300:]}")
        stray = temporaries(where)
        if stray:
            bad.append(f"temporary files left after the rerun: {', '.join(stray[:3])}")
    print(
        f"| {name} | {kills} | {min(ran):.1f}-{max(ran):.1f} | {finished} | {orphans} | {left} | {writes} | "
        f"{len(bad)} | {reruns} of {kills} |",
        flush=True,
    )
    for b in bad[:5]:
        print(f"|   | problem: {b[:200]} | | | | | | | |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", default="prepare,train,predict,export")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="tkvr-kills-"))
    os.environ.setdefault("TKVR_CACHE", str(work / "cache"))
    from tkvr.data.specs import resolve

    toy = resolve("toy")  # the toy world, written once before any kill
    val = [s.path for s in toy.split("val")][:48]
    small = ["--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "1", "--warmup", "0"]
    seed_run = work / "trained"
    subprocess.run(
        [
            *TKVR,
            "train",
            "--data",
            "toy",
            *small,
            "--epochs",
            "1",
            "--limit-batches",
            "2",
            "--out",
            str(seed_run),
        ],
        check=True,
        capture_output=True,
    )
    print(f"work folder: {work}\n")
    print(
        "| command | kills | killed after (s) | ended before the kill | a process of it alive 1 s after | "
        "processes of it alive 10 s after | files written after the kill | problems | "
        "reruns exit 0, every input |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    only = args.only.split(",")
    if "prepare" in only:
        src = work / "src"
        if not src.exists():
            import torch

            from tkvr.data.toy import write_video

            for i in range(12):
                (src / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
                x = (torch.rand(90, 3, 160, 160) * 255).to(torch.uint8)
                write_video(x, src / "ab"[i % 2] / f"c{i}.mp4", fps=25)
        trials(
            "prepare",
            args.kills,
            rng,
            work,
            lambda w: None,
            lambda w: [*TKVR, "prepare", "--data", str(src), "--out", str(w / "out"), "--workers", "2"],
            lambda w: [*TKVR, "prepare", "--data", str(src), "--out", str(w / "out"), "--workers", "2"],
            lambda w: check_prepared(w / "out"),
            lambda w, r: (
                "12 videos ready, 0 unreadable" in r.stdout
                and len((w / "out" / "train.txt").read_text().splitlines()) == 12
            ),
        )
    if "train" in only:
        cmd = [*TKVR, "train", "--data", "toy", *small, "--epochs", "3", "--limit-batches", "4"]
        trials(
            "train",
            args.kills,
            rng,
            work,
            lambda w: None,
            lambda w: [*cmd, "--out", str(w / "run")],
            lambda w: [*cmd, "--out", str(w / "run"), "--resume", "auto"],
            lambda w: check_train(w / "run"),
            lambda w, r: (
                json.loads((w / "run" / "report.json").read_text())["epochs"] == 3
                and check_train(w / "run") is None
            ),
        )
    if "predict" in only:
        cmd = [*TKVR, "predict", *val, "--checkpoint", str(seed_run), "--workers", "1", "--batch-size", "4"]
        trials(
            "predict",
            args.kills,
            rng,
            work,
            lambda w: None,
            lambda w: [*cmd, "--out", str(w / "p.csv")],
            lambda w: [*cmd, "--out", str(w / "p.csv"), "--resume"],
            lambda w: check_rows(w / "p.csv"),
            lambda w, r: check_rows(w / "p.csv", len(val)) is None,
        )
    if "export" in only:

        def setup(w):  # an earlier export of other labels in place: the kill must not mix them
            subprocess.run(
                [
                    *TKVR,
                    "export",
                    "--checkpoint",
                    str(seed_run),
                    "--out",
                    str(w / "m.pt2"),
                    "--labels",
                    "a,b",
                ],
                check=True,
                capture_output=True,
            )

        cmd = [*TKVR, "export", "--checkpoint", str(seed_run)]
        trials(
            "export",
            args.kills,
            rng,
            work,
            setup,
            lambda w: [*cmd, "--out", str(w / "m.pt2")],
            lambda w: [*cmd, "--out", str(w / "m.pt2")],
            lambda w: check_export(w / "m.pt2"),
            lambda w, r: (
                check_export(w / "m.pt2") is None
                and len(json.loads((w / "m.pt2.json").read_text())["classes"]) == 54
            ),
        )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
