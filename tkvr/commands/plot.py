"""tkvr plot: the paper's figures from runs (correlation, fractions, loss) and accuracy per epoch."""

from __future__ import annotations

from dataclasses import dataclass

from tkvr.base.progress import wrote
from tkvr.base.settings import Settings, fail_if, figure_problems, setting
from tkvr.commands.shared import Command

FIGURES = ("correlation", "fractions", "loss", "accuracy")


@dataclass
class PlotConfig(Settings):
    out: str = setting(
        required=True, help="Image to write; the format follows the suffix: .png, .svg or .pdf."
    )
    figure: str = setting(cli=False, default="")  # the command's first argument
    inputs: list[str] = setting(cli=False, default=[])  # the runs or files after it

    def validate(self) -> None:
        problems: list[str] = []
        if self.figure not in FIGURES:
            problems.append(f"tkvr plot {self.figure!r}: choose correlation, fractions, loss or accuracy")
        if not self.inputs:
            problems.append("give the runs (or, for correlation, an embeddings file) to draw from")
        elif self.figure == "correlation" and len(self.inputs) != 1:
            problems.append(f"tkvr plot correlation draws one head; {len(self.inputs)} inputs given")
        figure_problems(problems, "--out", self.out)
        fail_if(problems)


def run(cfg: PlotConfig):
    from tkvr.run.plots import draw  # deferred: tkvr --help loads no torch

    return draw(cfg)


def show(drawn, cfg) -> None:
    names = dict(
        correlation="Figure 1", fractions="Figure 3", loss="Figure 4", accuracy="validation top-1 per epoch"
    )
    wrote(cfg.out, f"{cfg.figure} ({names[cfg.figure]})")


COMMAND = Command(
    "plot",
    PlotConfig,
    run,
    """Draw a figure of the paper from runs: correlation (Fig. 1), fractions (Fig. 3), loss (Fig. 4);
    and accuracy: validation top-1 over the epochs of runs (also of a run still training).

    \b
    Examples:
      tkvr plot correlation runs/k400_learned --out corr.png      # a run's head, or an embeddings file
      tkvr plot fractions runs/lf --out fractions.svg             # runs (or folders of runs) of two heads
      tkvr plot loss runs/text runs/learned --out loss.png
      tkvr plot accuracy runs/text runs/learned --out accuracy.png
    """,
    show=show,
    arguments=(
        (
            "figure",
            {
                "required": False,
                "default": "",
                "help": "correlation (Figure 1: the inter-class "
                "correlation of a head), fractions (Figure 3: accuracy against label fraction), loss "
                "(Figure 4: training loss of runs) or accuracy (validation top-1 per epoch of runs).",
            },
        ),
        (
            "inputs",
            {
                "nargs": -1,
                "help": "correlation: one embeddings file, checkpoint or run; fractions, "
                "loss and accuracy: runs, or folders of runs.",
            },
        ),
    ),
)
