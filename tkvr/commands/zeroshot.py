"""tkvr zeroshot: recognise classes never trained on by swapping in their text embeddings
(the paper's Table 9 rows, tkvr.protocols.zeroshot)."""

from __future__ import annotations

from tkvr.config import ZeroshotConfig
from tkvr.progress import console, publish, show_plan


def run(cfg: ZeroshotConfig) -> dict:
    from tkvr.protocols import zeroshot

    if cfg.train.run.dry_run:
        return show_plan(zeroshot(cfg))
    return publish(zeroshot(cfg), show, cfg.json)


def show(out: dict) -> None:
    from rich.table import Table

    from tkvr.protocols import fmt

    t = Table(title=f"zero-shot: train {out['train']}, eval {out['eval']} ({out['protocol']} protocol)")
    t.add_column("row")
    t.add_column("top-1 %", justify="right")
    names = {"without_training": "w/o train (pre-trained)", "with_training": "w/ train on seen classes"}
    for k, name in names.items():
        if k in out:
            t.add_row(name, fmt(out[k]).rstrip("%"))
    console().print(t)
