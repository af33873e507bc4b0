"""tkvr train: fine-tune the visual encoder against a frozen text classifier. Its settings are the
run's own (`tkvr.run.settings.TrainConfig`: what config.yaml and every checkpoint record)."""

from __future__ import annotations

from tkvr.base.progress import say, wrote
from tkvr.commands.shared import Command
from tkvr.run.settings import TrainConfig


def run(cfg: TrainConfig):
    from tkvr.run.training import train  # deferred: tkvr --help loads no torch

    return train(cfg)


def plan(cfg: TrainConfig) -> dict:
    from tkvr.run.training import plan  # deferred: tkvr --help loads no torch

    return plan(cfg)


def show(r, cfg: TrainConfig) -> None:
    """The closing lines of a run (r: tkvr.run.training.TrainResult)."""
    m = r.metrics
    if m:
        best = f"; best top-1 {r.best_top1:.2f}%" if r.best_top1 >= 0 else ""
        what = f"final, stopped at step {r.steps} by --max-steps (a partial run)" if r.partial else "final"
        say(
            f"{what}: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  "
            f"mean class {m['mean_class_accuracy']:.2f}% "
            f"on {m['num_samples']} val clips{best}"
        )
    wrote(r.out, "config.yaml, checkpoints/, metrics.csv, report.json")


COMMAND = Command(
    "train",
    TrainConfig,
    run,
    """Fine-tune the visual encoder with a frozen text classifier.

    \b
    Example:
      tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 8 --out runs/k400_b16
    """,
    show=show,
    plan=plan,
    config_file=True,
)
