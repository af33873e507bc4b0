"""tkvr plot: the paper's Figures 1, 3 and 4 from embeddings files and run directories."""

from __future__ import annotations

from tkvr.config import PlotConfig
from tkvr.progress import say


def run(cfg: PlotConfig):
    from tkvr.plots import plot

    cfg.validate()
    drawn = plot(cfg.figure, cfg.inputs, cfg.out)
    say(
        f"wrote {cfg.out}: {cfg.figure} "
        f"({dict(correlation='Figure 1', fractions='Figure 3', loss='Figure 4')[cfg.figure]})"
    )
    return drawn
