"""tkvr backbones: the --backbone names tkvr takes, their --pretrained tags, which are cached."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, say
from tkvr.base.settings import Settings, borrow, fail_if
from tkvr.commands.shared import Command, Shared


@dataclass
class BackbonesConfig(Settings):
    json: str | None = borrow(Shared, "json")

    def validate(self) -> None:
        problems: list[str] = []
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: BackbonesConfig) -> list[dict]:
    from tkvr.model.backbones import listing  # deferred: tkvr --help loads no torch

    return listing()


def show(rows: list[dict], cfg) -> None:
    t = Table(title="--backbone names (--pretrained tags; * cached here, usable offline)")
    t.add_column("backbone")
    t.add_column("kind")
    t.add_column("--pretrained")
    for r in rows:
        tags = [f"{x}*" if x in r["cached"] else x for x in r["pretrained"]]
        t.add_row(r["backbone"], r["kind"], ", ".join(tags))
    console().print(t)
    say("any open_clip model also takes --pretrained PATH (a local file); hf-hub:ORG/REPO names work too")


COMMAND = Command(
    "backbones",
    BackbonesConfig,
    run,
    """List the --backbone names tkvr takes, with their --pretrained tags and which are cached.

    \b
    Example:
      tkvr backbones --json backbones.json
    """,
    show=show,
)
