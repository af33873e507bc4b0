"""What the command modules share: the `Command` row each of them declares. (The settings several
commands show alike, --json, --checkpoint, ..., are `tkvr.run.settings.Shared`.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tkvr.base.errors import TkvrError


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
    readers: bool = True  # --workers are DataLoader readers (False: a pool of its own)
