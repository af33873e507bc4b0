"""Output on rank 0 only, through one place: rich when a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys

_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def is_rank_zero() -> bool:
    for v in _RANK_VARS:
        if os.environ.get(v, "0") not in ("", "0"):
            return False
    return True


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def say(msg: str) -> None:
    """One line to stdout on rank 0."""
    if is_rank_zero():
        print(msg, file=sys.stdout, flush=True)


def track(items, total: int, description: str):
    """Iterate with a rich progress bar on a terminal; plain lines (every 10%) otherwise."""
    if not is_rank_zero():
        yield from items
        return
    con = console()
    if con.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=con) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    step = max(1, total // 10)
    for n, item in enumerate(items, 1):
        yield item
        if n % step == 0 or n == total:
            say(f"{description}: {n}/{total}")
