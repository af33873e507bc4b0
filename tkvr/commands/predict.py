"""tkvr predict: top-k labels for videos and images, from a run or zero-shot; long videos in windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tkvr.base.errors import Fault
from tkvr.base.fileio import writable
from tkvr.base.progress import console
from tkvr.base.settings import Settings, at_least, borrow, choice_problems, fail_if, figure_problems, setting
from tkvr.commands.shared import Command
from tkvr.data.settings import DataConfig, SourceConfig, eval_problems, views_text
from tkvr.model.settings import ModelConfig, frames_problems
from tkvr.run.settings import DeviceConfig, Shared


@dataclass
class PredictConfig(Settings):
    files: list[str] = setting(cli=False, default=[])  # the command's arguments
    checkpoint: str | None = borrow(
        Shared,
        "checkpoint",
        default=None,
        help="Run directory or checkpoint file. Without it, --backbone's pre-trained model scores "
        "--labels zero-shot.",
        required=False,
    )
    backbone: str | None = borrow(
        ModelConfig,
        "backbone",
        default=None,
        help="Zero-shot without a checkpoint: the pre-trained "
        "model (with TAP over frames and a frozen head of --labels' names).",
        shown="none",
    )
    pretrained: str | None = borrow(ModelConfig, "pretrained")
    frames: int | None = borrow(
        ModelConfig, "frames", default=None, shown="the checkpoint's; 8 with --backbone"
    )
    templates: list[str] | None = borrow(ModelConfig, "templates", shown="the checkpoint's; the model's own")
    labels: str | None = borrow(Shared, "labels")
    top_k: int = setting(5, "Labels per input (or window).")
    out: str | None = setting(
        None,
        "Write one row per input (per window with --window) here as it goes: .csv or .jsonl; "
        "with --window the segments go beside it (NAME.segments.csv or .jsonl).",
    )
    resume: bool = setting(False, "Continue an --out of a killed run: skip the inputs already in it.")
    window: float | None = setting(None, "Score long videos in windows of this many seconds.")
    stride: float | None = setting(
        None, "Seconds from one window's start to the next.", shown="half --window"
    )
    plot: str | None = borrow(
        Shared,
        "plot",
        help="With --window: draw the top labels' scores over time and the segments here (.png, .svg or "
        ".pdf; needs matplotlib).",
    )
    views: tuple[int, int] = borrow(
        DataConfig,
        "views",
        default="1x1",
        help="Views per input: C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3; their video "
        "embeddings are averaged, then scored.",
    )
    test_scale: float | None = borrow(
        DataConfig, "test_scale", default=None, shown="the checkpoint's; 256/224"
    )
    batch_size: int = borrow(Shared, "batch_size", help="Inputs (or windows) per batch.")
    workers: int | None = borrow(SourceConfig, "workers")
    decoder: str = borrow(SourceConfig, "decoder")
    accelerator: str = borrow(DeviceConfig, "accelerator")
    precision: str = borrow(DeviceConfig, "precision")
    json: str | None = borrow(Shared, "json")

    def validate(self) -> None:
        problems = choice_problems(self, nested=False)
        at_least(problems, self, 1, "top_k", "batch_size")
        frames_problems(problems, self)
        at_least(problems, self, 0, "workers")
        problems += eval_problems(self.test_scale, None)
        if self.window is not None and isinstance(self.views, tuple) and self.views[0] != 1:
            problems.append(
                f"--views {views_text(self.views)} with --window: the windows are the clips; give --views 1xS"
            )
        if not self.files:
            problems.append("give video or image files, folders or list files to predict")
        if not self.checkpoint and not self.backbone:
            problems.append("give --checkpoint RUN, or --backbone NAME with --labels for zero-shot")
        if self.checkpoint and self.backbone:
            problems.append(
                "--backbone scores without a checkpoint; give --checkpoint or --backbone, not both"
            )
        if self.backbone and not self.checkpoint and not self.labels:
            problems.append(
                f'--backbone {self.backbone} needs --labels: the class names to score ("a,b,c" or a file)'
            )
        for flag, v in (("--window", self.window), ("--stride", self.stride)):
            if v is not None and not v > 0:
                problems.append(f"{flag} {v}: give a positive number of seconds")
        least = max(0.01, (self.window or 0) / 100)  # windows a video are bounded: a list, a row each
        if self.window and self.stride and 0 < self.stride < least:
            problems.append(f"--stride {self.stride:g}: at least {least:g} s (1/100 of --window, and 0.01 s)")
        if self.window is None:
            for flag, v in (("--stride", self.stride), ("--plot", self.plot)):
                if v is not None:
                    problems.append(f"{flag} applies to windows of long videos: give --window SECONDS too")
        if self.out and Path(self.out).suffix.lower() not in (".csv", ".jsonl"):
            problems.append(f"--out {self.out}: end the name in .csv or .jsonl")
        if self.resume and not self.out:
            problems.append("--resume continues an --out file: give --out")
        if self.out and not self.resume and Path(self.out).is_file() and Path(self.out).stat().st_size:
            problems.append(
                f"--out {self.out} already holds results: add --resume to continue it, or give another --out"
            )
        figure_problems(problems, "--plot", self.plot)
        for flag, path in (("--json", self.json), ("--out", self.out)):
            writable(problems, flag, path)
        fail_if(problems)


def run(cfg: PredictConfig) -> list[dict]:
    from tkvr.run.predict import predict  # deferred: tkvr --help loads no torch

    return predict(cfg)


SHOWN = 20  # inputs printed; --out and --json hold them all


def show(results: list[dict], cfg) -> None:
    con = console()
    for r in results[:SHOWN]:
        if "error" in r:
            con.print(f"{r['file']}: unreadable ({r['error']})", markup=False)
        elif "segments" in r:
            con.print(f"{r['file']}: {len(r['windows'])} windows", markup=False)
            for s in r["segments"]:
                con.print(
                    f"  {s['start']:8.2f}-{s['end']:8.2f}s  {s['score']:6.3f}  {s['label']}", markup=False
                )
        else:
            con.print(r["file"], markup=False)
            for lab, s in zip(r["labels"], r["scores"]):
                con.print(f"  {s:6.3f}  {lab}", markup=False)
    if len(results) > SHOWN:
        where = " and ".join(f"--{k} {v}" for k, v in (("out", cfg.out), ("json", cfg.json)) if v)
        con.print(f"... {len(results) - SHOWN} more" + (f" in {where}" if where else ""))


def status(results: list[dict]) -> int:
    bad = [r for r in results if "error" in r]
    if bad:  # the others' labels are printed and written; the exit code says not all were read
        raise Fault(f"{len(bad)} of {len(results)} inputs could not be read (e.g. {bad[0]['error']})")
    return 0


COMMAND = Command(
    "predict",
    PredictConfig,
    run,
    """Top-k labels with scores for videos and images: files, folders, list files; from a
    trained run, or zero-shot from a pre-trained backbone; long videos in windows and segments.

    \b
    Examples:
      tkvr predict clips/ --backbone ViT-B/16 --labels "surfing,skiing,cooking" --out tags.csv
      tkvr predict clip.mp4 photo.jpg --checkpoint runs/k400_b16 --top-k 3
      tkvr predict match.mp4 --checkpoint runs/k400_b16 --window 4 --stride 1 --plot timeline.png
    """,
    show=show,
    status=status,
    arguments=(
        (
            "files",
            {"nargs": -1, "help": "Video or image files, folders (searched recursively) and list files."},
        ),
    ),
)
