"""tkvr eval: a checkpoint scored on a split (top-1, top-5, mean class, per class)."""

from __future__ import annotations

from rich.table import Table

from tkvr.base.progress import console, say
from tkvr.commands.shared import Command
from tkvr.run.settings import EvalConfig


def run(cfg: EvalConfig) -> dict:
    from tkvr.run.evaluation import evaluate_checkpoint  # deferred: tkvr --help loads no torch

    return evaluate_checkpoint(cfg)


def show(report: dict, cfg) -> None:
    t = Table(title=f"{report['data']} / {report['split']}, views {report['views']}")
    for col in ("top-1 %", "top-5 %", "mean class %", "samples", "GFLOPs x views", "params (M)"):
        t.add_column(col, justify="right")
    c, s = cfg.views
    t.add_row(
        f"{report['top1']:.2f}",
        f"{report['top5']:.2f}",
        f"{report['mean_class_accuracy']:.2f}",
        str(report["num_samples"]),
        f"{report['gflops_per_view']:.3g} x {c * s}",
        f"{report['params_m']:.2f}",
    )
    console().print(t)
    say(f"weights: {report['weights']}")
    if report["unreadable"]:
        say(f"{len(report['unreadable'])} unreadable videos left out, e.g. {report['unreadable'][0]}")


COMMAND = Command(
    "eval",
    EvalConfig,
    run,
    """Score a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

    \b
    Example:
      tkvr eval --checkpoint runs/k400_b16 --views 4x3 --json runs/k400_b16/eval_4x3.json
    """,
    show=show,
)
