"""tkvr zeroshot: unseen classes recognised by swapping the classifier (the paper's Table 9)."""

from __future__ import annotations

from rich.table import Table

from tkvr.base.progress import console
from tkvr.commands.shared import Command
from tkvr.run.settings import ZeroshotConfig


def run(cfg: ZeroshotConfig) -> dict:
    from tkvr.run.protocols import zeroshot  # deferred: tkvr --help loads no torch

    return zeroshot(cfg)


def show(out: dict, cfg) -> None:
    t = Table(title=f"zero-shot: train {out['train']}, eval {out['eval']} ({out['protocol']} protocol)")
    t.add_column("row")
    t.add_column("top-1 %", justify="right")
    names = {"without_training": "w/o train (pre-trained, TAP)", "with_training": "w/ train on seen classes"}
    for k, name in names.items():
        if k in out:
            by = out[k].get("scored_by", {})
            if "checkpoint" in by:
                name = f"w/o train: {by['checkpoint']}"
            elif k == "with_training" and by:
                name += f" ({by['temporal']})"
            r = out[k]
            t.add_row(name, f"{r['top1']:.2f}" + (f" ± {r['std']:.2f}" if "std" in r else ""))
    console().print(t)


COMMAND = Command(
    "zeroshot",
    ZeroshotConfig,
    run,
    """Zero-shot recognition of unseen classes (the paper's Table 9): w/o and w/ training.

    \b
    Example:
      tkvr zeroshot --train K300 --eval K100 --data-root /data --backbone ViT-B/16 --protocol half
    """,
    show=show,
    config_file=True,
)
