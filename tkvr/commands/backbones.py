"""tkvr backbones: the --backbone names tkvr takes, their --pretrained tags, which are cached."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, say
from tkvr.base.settings import Settings, borrow, fail_if
from tkvr.commands.shared import Command
from tkvr.run.settings import Shared


@dataclass
class BackbonesConfig(Settings):
    json: str | None = borrow(Shared, "json")

    def validate(self) -> None:
        problems: list[str] = []
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: BackbonesConfig) -> list[dict]:
    from tkvr.model.catalog import available  # deferred: tkvr --help reads no open_clip table

    return available()


def show(rows: list[dict], cfg) -> None:
    def name(r):
        return r["backbone"] + (f" (= {r['also']})" if "also" in r else "")

    def tags(r):
        return ", ".join(f"{x}*" if x in r["cached"] else x for x in r["pretrained"])

    con = console()
    if con.is_terminal:
        t = Table(title="--backbone names (--pretrained tags; * cached here, usable offline)")
        t.add_column("backbone")
        t.add_column("kind")
        t.add_column("--pretrained")
        for r in rows:
            t.add_row(name(r), r["kind"], tags(r))
        con.print(t)
    else:  # piped: one whole line per backbone, for grep and cut (a table would wrap at 80 columns)
        wide = max(len(name(r)) for r in rows)
        kind = max(len(r["kind"]) for r in rows)
        for r in rows:
            print(f"{name(r):<{wide}}  {r['kind']:<{kind}}  {tags(r)}")
    say(
        "OpenAI names default to --pretrained openai; the other names need --pretrained TAG (* cached "
        "here, usable offline), a local file PATH or none; hf-hub:ORG/REPO names work too"
    )


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
    libraries=False,
)
