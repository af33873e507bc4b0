"""tkvr fewshot: K-shot C-way training over all classes, a sweep over K, mean ± std over seeds.

Each (K, seed) is an ordinary training run on a K-shot sample (tkvr.protocols.fewshot).
"""

from __future__ import annotations

from tkvr.config import FewshotConfig
from tkvr.progress import console, publish, show_plan


def run(cfg: FewshotConfig) -> dict:
    from tkvr.protocols import fewshot

    if cfg.train.run.dry_run:
        return show_plan(fewshot(cfg))
    return publish(fewshot(cfg), lambda r: show(r, cfg.train.model.head, cfg.train.data.data), cfg.json)


def show(results: dict, head: str, data: str) -> None:
    from rich.table import Table

    t = Table(title=f"few-shot {data}, head {head}: top-1 % (mean ± std over seeds)")
    t.add_column("shots", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("runs", justify="right")
    for k, v in results.items():
        t.add_row(str(k), f"{v['top1']:.2f} ± {v['std']:.2f}", str(len(v["runs"])))
    console().print(t)
