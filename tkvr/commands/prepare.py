"""tkvr prepare: a dataset rewritten once into a form that trains fast (tkvr.prepare)."""

from __future__ import annotations

from tkvr.config import PrepareConfig


def run(cfg: PrepareConfig) -> dict:
    from tkvr.prepare import prepare

    return prepare(cfg)
