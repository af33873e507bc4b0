"""tkvr eval: rebuild a model from its checkpoint alone and score a split, with multi-view testing."""

from __future__ import annotations

from tkvr.config import EvalConfig
from tkvr.progress import console, publish, say, show_plan


def run(cfg: EvalConfig) -> dict:
    from tkvr.evaluation import evaluate_checkpoint

    if cfg.dry_run:
        return show_plan(evaluate_checkpoint(cfg))
    return publish(evaluate_checkpoint(cfg), show, cfg.json)


def show(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{report['data']} / {report['split']}, views {report['views']}")
    for col in ("top-1 %", "top-5 %", "mean class %", "samples", "GFLOPs x views", "params (M)"):
        t.add_column(col, justify="right")
    c, s = report["views"].lower().split("x")
    t.add_row(
        f"{report['top1']:.2f}",
        f"{report['top5']:.2f}",
        f"{report['mean_class_accuracy']:.2f}",
        str(report["num_samples"]),
        f"{report['gflops_per_view']:.3g} x {int(c) * int(s)}",
        f"{report['params_m']:.2f}",
    )
    console().print(t)
    if report["unreadable"]:
        say(f"{len(report['unreadable'])} unreadable videos left out, e.g. {report['unreadable'][0]}")
