"""tkvr train: fine-tune the visual encoder against a frozen class-embedding matrix."""

from __future__ import annotations

from tkvr.config import TrainConfig


def run(cfg: TrainConfig):
    """-> tkvr.training.TrainResult; the run directory holds the rest."""
    from tkvr.training import train

    return train(cfg)
