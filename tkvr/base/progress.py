"""Output on rank 0 only, through one place: rich when a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml

from tkvr.base.fileio import write_json

_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def is_rank_zero() -> bool:
    for v in _RANK_VARS:
        if os.environ.get(v, "0") not in ("", "0"):
            return False
    return True


def last_word(launcher: int, rank: int) -> Path:
    """Where a process a DDP launch started leaves its error line for the launching process."""
    return Path(tempfile.gettempdir()) / f"tkvr-{launcher}-rank{rank}.err"


def leave_word(line: str) -> None:
    """A started process's error line, for rank 0 to print when it names this process's end."""
    try:
        last_word(os.getppid(), int(os.environ.get("LOCAL_RANK", "0"))).write_text(line)
    except (OSError, ValueError):
        pass


def console():
    from rich.console import (
        Console,  # deferred: keeps tkvr --help fast
    )

    return Console(highlight=False, soft_wrap=True)


# Loggers of the libraries tkvr runs: their INFO lines (Fabric's precision and DDP banners,
# transformers' loading bars, the hub's retries) are theirs, not tkvr's.
LIBRARY_LOGGERS = (
    "lightning",
    "lightning_fabric",
    "lightning.fabric",
    "transformers",
    "huggingface_hub",
    "sentence_transformers",
    "timm",
    "torch.distributed",
)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep tkvr's output tkvr's: the libraries say only errors, unless --verbose. The variables
    reach the processes a DDP launch starts; each of them sets its own loggers the same way."""
    if verbose:
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    hub = sys.modules.get("huggingface_hub")  # read its variable at import: switch its bars off here
    if hub is not None:
        hub.utils.disable_progress_bars()  # transformers imported later follows the hub's switch
    if "transformers" in sys.modules:  # imported already (a script, a test): its own switch
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def count(n: int, noun: str) -> str:
    """'1 video', '2 videos', '1 class', '3 classes', '2 batches', '2 epochs'."""
    if n == 1:
        return f"1 {noun}"
    hard = noun.endswith(("s", "x", "sh")) or (noun.endswith("ch") and not noun.endswith("och"))  # epoch
    return f"{n} {noun}es" if hard else f"{n} {noun}s"


def say(msg: str) -> None:
    """One line to stdout on rank 0."""
    if is_rank_zero():
        print(msg, file=sys.stdout, flush=True)


WRITTEN: list[tuple[str, str]] = []  # (path, what) of this command's outputs, said at its end


def wrote(path, what: str = "") -> None:
    """Note an output file (or folder) of the command; the CLI names each in one line at the end,
    after the result: "wrote PATH: what"."""
    if is_rank_zero() and str(path) not in (p for p, _ in WRITTEN):
        WRITTEN.append((str(path), what))


def say_written() -> None:
    """One "wrote ..." line per output noted with `wrote`, in the order written (a folder's line
    covers what was noted inside it, e.g. the demo's runs); then forgotten."""
    folders = [Path(p) for p, _ in WRITTEN]
    for path, what in WRITTEN:
        if not any(f in Path(path).parents for f in folders):
            say(f"wrote {path}" + (f": {what}" if what else ""))
    WRITTEN.clear()


def show_plan(resolved: dict) -> dict:
    """Print a --dry-run's resolved settings as YAML (stdout, rank 0); returns them."""
    if is_rank_zero():
        print(yaml.safe_dump(resolved, sort_keys=False), end="", flush=True)
    return resolved


def publish(result, show, json_path: str | None, payload=None):
    """Rank 0 shows a command's result and writes it (or `payload`) to --json, whole or not at
    all. Returns the result."""
    if is_rank_zero():
        show(result)
        if json_path:
            write_json(result if payload is None else payload, json_path)
            wrote(json_path, "the report as JSON")
    return result


def track(items, total: int, description: str):
    """Iterate with a rich progress bar on a terminal; plain lines (every 10%) otherwise."""
    if not is_rank_zero():
        yield from items
        return
    if console().is_terminal:
        with bar(total, description, transient=False) as tick:
            for item in items:
                yield item
                tick()
        return
    step = max(1, total // 10)
    for n, item in enumerate(items, 1):
        yield item
        if n % step == 0 or n == total:
            say(f"{description}: {n}/{total}")


@contextmanager
def status(message: str):
    """A phase that can take seconds (loading libraries, weights, launching): a spinner with
    `message` on a terminal, rank 0, gone when the phase ends; nothing in a pipe or a log."""
    con = console() if is_rank_zero() else None
    if con is None or not con.is_terminal:
        yield
        return
    with con.status(message):
        yield


def rich_progress(con, info: bool = False, transient: bool = False):
    """rich's Progress with tkvr's columns: what, bar, n/total, (the step's numbers), time left."""
    from rich.progress import (  # deferred: keeps tkvr --help fast
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    info_column = [TextColumn("{task.fields[info]}")] if info else []
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *info_column,
        TimeRemainingColumn(),
        console=con,
        transient=transient,
    )


@contextmanager
def bar(total: int, description: str, transient: bool = True, lines: bool = False):
    """A progress bar for long work (scoring a split) on a terminal, rank 0. In a pipe or a log:
    nothing, or with `lines` a plain "description: n/total" line at each tenth done (and at least
    every 30 s), as training prints. Yields `tick(n=1)`, called as items are done."""
    con = console() if is_rank_zero() else None
    if con is None or not con.is_terminal:
        if not (lines and con is not None):
            yield lambda n=1: None
            return
        done, said = [0, 0], [time.monotonic()]  # items done, done at the last line; its time

        def tick(n: int = 1) -> None:
            done[0] += n
            late = time.monotonic() - said[0] >= 30
            if done[0] == total or done[0] - done[1] >= max(1, total // 10) or late:
                say(f"{description}: {done[0]}/{total}")
                done[1], said[0] = done[0], time.monotonic()

        yield tick
        return
    with rich_progress(con, transient=transient) as shown:
        task = shown.add_task(description, total=total)
        yield lambda n=1: shown.advance(task, n)


class TrainProgress:
    """Rank 0: a rich bar per epoch (step, loss, lr, clips/s, ETA) on a terminal; otherwise a
    plain line every ~10% of an epoch. One summary line per epoch in both cases."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True):
        self.epochs, self.steps_per_epoch, self.enabled = epochs, steps_per_epoch, enabled
        self.bar = None
        self.task = None
        self.every = max(1, steps_per_epoch // 10)
        self.done_in_epoch = 0

    def __enter__(self):
        if self.enabled and console().is_terminal:
            self.bar = rich_progress(console(), info=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    @contextmanager
    def subtask(self, description: str, total: int):
        """Work inside the epoch loop (validation) as a second line of the training bar, which
        holds the terminal; nothing without a bar. Yields `tick()`."""
        if self.bar is None:
            yield lambda: None
            return
        task = self.bar.add_task(description, total=total, info="")
        try:
            yield lambda: self.bar.advance(task)
        finally:
            self.bar.remove_task(task)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.done_in_epoch = 0
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(
                f"epoch {epoch + 1}/{self.epochs}", total=self.steps_per_epoch, info=""
            )

    def advance(self) -> None:
        """One step done, no new numbers (reading them would sync the device)."""
        if not self.enabled:
            return
        self.done_in_epoch += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1)

    def update(self, step: int, loss: float, lr: float, rate: float) -> None:
        if not self.enabled:
            return
        self.done_in_epoch += 1
        info = f"step {step} loss {loss:.4f} lr {lr:.2e} {rate:.1f} clips/s"
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=info)
        else:
            say(f"epoch {self.epoch + 1}/{self.epochs} {self.done_in_epoch}/{self.steps_per_epoch}: {info}")

    def end_epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        val = f", val top-1 {row['val_top1']:.1f}% top-5 {row['val_top5']:.1f}%" if "val_top1" in row else ""
        line = (
            f"epoch {row['epoch']}/{self.epochs}: train loss {row['train_loss']:.4f}{val}, "
            f"{row['clips_per_s']:.1f} clips/s, {row['wall_s']:.0f}s"
        )
        if self.bar is not None:
            self.bar.console.print(line)
        else:
            say(line)
