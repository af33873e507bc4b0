"""What the command modules share: the `Command` row each of them declares, and the settings several
commands show alike (--json, --checkpoint, --labels, --plot, ...), declared here once and borrowed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tkvr.base.errors import TkvrError
from tkvr.base.settings import Settings, setting
from tkvr.data.settings import SPLITS


class NotBuilt(TkvrError):
    """A feature that a later release of tkvr builds; the CLI exits with code 1, not 2."""


@dataclass(frozen=True)
class Command:
    name: str
    settings: type  # the config class whose declarations become the options
    run: Callable  # settings -> result (calls the library)
    help: str
    show: Callable | None = None  # (result, settings) -> None; None: the library says it
    plan: Callable | None = None  # --dry-run, where it is another function than `run`
    status: Callable | None = None  # result -> exit code (or a Fault)
    arguments: tuple = ()  # click arguments before the options: (name, click.argument's keywords)
    config_file: bool = False  # --config FILE.yaml
    libraries: bool = True  # loads torch and the model libraries (False: answers without them)


@dataclass
class Shared(Settings):
    """Declarations borrowed by several commands (never a command's settings itself)."""

    checkpoint: str = setting(required=True, help="Run directory (its best, else last checkpoint) or a file.")
    json: str | None = setting(None, "Write the report here as JSON (written whole or not at all).")
    split: str = setting("train", "Which split to scan.", choices=SPLITS)
    plot: str | None = setting(
        None, "Also draw the inter-class correlation map to this PNG (needs matplotlib)."
    )
    labels: str | None = setting(None, 'Class names: "a,b,c" or a labels file (open vocabulary).')
    batch_size: int = setting(16, "Videos per device and batch.")
