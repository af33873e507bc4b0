"""tkvr check: read every sample of a split as training will; say what does not read."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, count, say
from tkvr.base.settings import Settings, borrow, choice_problems, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.data.settings import CheckSource, DataConfig, eval_problems, stem_of
from tkvr.model.settings import ModelConfig, frames_problems
from tkvr.run.settings import Shared


@dataclass
class CheckConfig(Settings):
    files: list[str] = setting(cli=False, default=[])  # the command's arguments
    source: CheckSource = field(default_factory=CheckSource)
    split: str = borrow(Shared, "split")
    frames: int | None = borrow(
        ModelConfig, "frames", default=None, help="Frames read per video.", shown="8; the checkpoint's"
    )
    views: tuple[int, int] = borrow(
        DataConfig,
        "views",
        default="1x1",
        help="FILES: views per input, C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3.",
    )
    save_views: str | None = setting(
        None,
        "FILES: write the pixels each view feeds the model, before normalisation, into this folder: "
        "<stem>/view{VV}_frame{TT}.png and a contact sheet <stem>.png per input.",
    )
    checkpoint: str | None = borrow(
        Shared,
        "checkpoint",
        default=None,
        required=False,
        help="FILES: the input size, test scale and frames of this run's model.",
    )
    backbone: str | None = borrow(
        ModelConfig, "backbone", default=None, help="FILES: the input size of this model.", shown="224 px"
    )
    test_scale: float | None = borrow(
        DataConfig, "test_scale", default=None, shown="the checkpoint's; the released rule"
    )
    json: str | None = borrow(Shared, "json")

    def validate(self) -> None:
        problems = self.source.validate() + choice_problems(self, nested=False)
        frames_problems(problems, self)
        problems += eval_problems(self.test_scale, None)
        if self.files and self.source.data:
            problems.append("give --data DATASET to check a split, or FILES to read, not both")
        if not self.files and not self.source.data:
            problems.append(
                "give --data DATASET to check a split, or video/image files (--save-views DIR shows "
                "what the model sees)"
            )
        if not self.files:
            for flag, v in (
                ("--save-views", self.save_views),
                ("--checkpoint", self.checkpoint),
                ("--backbone", self.backbone),
                ("--test-scale", self.test_scale),
            ):
                if v is not None:
                    problems.append(f"{flag} applies to FILES; give video or image files")
            if self.views != (1, 1):
                problems.append("--views applies to FILES; give video or image files")
        if self.checkpoint and self.backbone:
            problems.append("--checkpoint and --backbone both name the model; give one")
        for f in self.files or []:
            if not os.path.exists(f):
                problems.append(f"{f}: no such file or folder")
        stems = Counter(stem_of(f) for f in self.files or [])
        twice = [s for s, n in stems.items() if n > 1]
        if self.save_views and twice:
            problems.append(
                f"--save-views: {count(stems[twice[0]], 'input')} would be saved as {twice[0]!r}; give "
                "files with distinct names, or one --save-views folder each"
            )
        writable(problems, "--save-views", self.save_views, folder=True)
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: CheckConfig) -> dict:
    from tkvr.run.check import check, check_files  # deferred: tkvr --help loads no torch

    if not cfg.files:
        return check(cfg.source, split=cfg.split, frames=cfg.frames or ModelConfig().frames)
    size, scale, frames = model_input(cfg)
    return check_files(
        cfg.files,
        frames=cfg.frames or frames,
        views=cfg.views,
        size=size,
        scale=cfg.test_scale if cfg.test_scale is not None else scale,
        decoder=cfg.source.decoder,
        save=cfg.save_views,
        device=cfg.source.decode_device,
    )


def model_input(cfg: CheckConfig) -> tuple[int, float | None, int]:
    """(input size, test scale, frames) of --checkpoint's model or --backbone's; 224 px, the
    released scale rule and 8 frames without either."""
    from tkvr.model.backbones import input_size_of  # deferred: loads open_clip

    if cfg.checkpoint:
        from tkvr.run.checkpoint import read_checkpoint  # deferred: loads torch

        c = read_checkpoint(cfg.checkpoint)["config"]
        size = input_size_of(c["model"]["backbone"], c["model"].get("visual")) or 224
        return size, c["data"].get("test_scale"), c["model"]["frames"]
    if cfg.backbone:
        return input_size_of(cfg.backbone) or 224, None, ModelConfig().frames
    return 224, None, ModelConfig().frames


def show(r: dict, cfg) -> None:
    if "files" in r:
        return show_files(r)
    classes, sizes = r["classes"], r["samples_per_class"]
    table = Table(title=f"{r['data']} / {r['split']}: samples per class")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for y, name in enumerate(classes):
        table.add_row(str(y), name, str(sizes[y]))
    if len(classes) <= 60:
        console().print(table)
    say(
        f"{count(r['num_samples'], 'sample')}, {count(len(classes), 'class')} (per class: min {min(sizes)}, "
        f"max {max(sizes)}); decoder {r['decoder']}"
    )
    if r["listed_not_on_disk"]:
        listed = count(len(r["listed_not_on_disk"]), "video")
        say(f"{listed} listed in the annotations are not on disk (left out)")
    unread = [p for p in r["unreadable"] if p not in set(r["missing"]) | set(r["empty"])]
    for kind, paths in (("missing", r["missing"]), ("empty", r["empty"]), ("unreadable", unread)):
        for p in paths[:20]:
            say(f"{kind}: {p} ({r['notes'][p]})")
        if len(paths) > 20:
            say(f"... and {len(paths) - 20} more {kind}")
    empty_classes = [classes[y] for y in range(len(classes)) if sizes[y] == 0]
    if empty_classes:
        say(f"{count(len(empty_classes), 'class')} with no {r['split']} samples (e.g. {empty_classes[:3]})")
    bad = len(r["unreadable"])
    say("all samples read" if not bad else f"{bad} of {r['num_samples']} samples do not read")


def show_files(r: dict) -> None:
    size, short = r["size"], r["short_side"]
    say(f"views {r['views']}, {r['frames']} frames a clip, short side {short} px (bicubic), {size} px crops")
    for f in r["files"]:
        h, w = f["shape"]
        say(f"{f['file']}: {w}x{h}; frames " + "; ".join(", ".join(map(str, c)) for c in f["frames_read"]))
    for p in r["unreadable"]:
        say(f"unreadable: {p} ({r['notes'][p]})")
    bad = len(r["unreadable"])
    n = len(r["files"]) + bad
    say(f"all {count(n, 'input')} read" if not bad else f"{bad} of {n} inputs do not read")


def status(r: dict) -> int:
    return 1 if r["unreadable"] else 0


COMMAND = Command(
    "check",
    CheckConfig,
    run,
    """Read every sample of a split the way training will; report missing, empty and unreadable
    files, the class count and samples per class. Or read FILES the way eval and predict read them
    (the released test protocol: frames, bicubic resize, crops) and, with --save-views, write the
    pixels each view feeds the model. Exit 0 when everything reads, 1 otherwise.

    \b
    Examples:
      tkvr check --data ucf101 --data-root /data --split val --json ucf_val.json
      tkvr check clip.mp4 --views 4x3 --frames 8 --save-views views/
    """,
    show=show,
    status=status,
    arguments=(
        (
            "files",
            {"nargs": -1, "help": "Video or image files, or folders of frames, to read as eval reads them."},
        ),
    ),
)
