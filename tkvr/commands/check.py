"""tkvr check: read every sample of a split as training will; say what does not read."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, count, say
from tkvr.base.settings import Settings, borrow, fail_if
from tkvr.commands.shared import Command
from tkvr.data.settings import CheckSource
from tkvr.model.settings import ModelConfig, frames_problems
from tkvr.run.settings import Shared


@dataclass
class CheckConfig(Settings):
    source: CheckSource = field(default_factory=CheckSource)
    split: str = borrow(Shared, "split")
    frames: int = borrow(ModelConfig, "frames", help="Frames read per video, as in training.")
    json: str | None = borrow(Shared, "json")

    def validate(self) -> None:
        problems = self.source.validate()
        frames_problems(problems, self)
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: CheckConfig) -> dict:
    from tkvr.data.check import check  # deferred: tkvr --help loads no torch

    return check(cfg.source, split=cfg.split, frames=cfg.frames)


def show(r: dict, cfg) -> None:
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


def status(r: dict) -> int:
    return 1 if r["unreadable"] else 0


COMMAND = Command(
    "check",
    CheckConfig,
    run,
    """Read every sample of a split the way training will; report missing, empty and unreadable
    files, the class count and samples per class. Exit 0 when every sample reads, 1 otherwise.

    \b
    Example:
      tkvr check --data ucf101 --data-root /data --split val --json ucf_val.json
    """,
    show=show,
    status=status,
)
