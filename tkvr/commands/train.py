"""tkvr train: fine-tune the visual encoder against a frozen class-embedding matrix."""

from __future__ import annotations

from tkvr.config import TrainConfig


def run(cfg: TrainConfig):
    """-> tkvr.training.TrainResult; the run directory holds the rest. --dry-run: the resolved
    settings as YAML, nothing written."""
    from tkvr.progress import show_plan
    from tkvr.training import plan, train

    if cfg.run.dry_run:
        return show_plan(plan(cfg))
    return train(cfg)
