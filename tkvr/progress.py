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
