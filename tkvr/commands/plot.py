"""tkvr plot: the paper's figures from runs (correlation, fractions, loss) and accuracy per epoch."""

from __future__ import annotations

from dataclasses import dataclass

from tkvr.base.progress import wrote
from tkvr.base.settings import Settings, borrow, fail_if, figure_problems, setting
from tkvr.commands.shared import Command
from tkvr.run.settings import OptimConfig

FIGURES = ("correlation", "fractions", "loss", "accuracy")


@dataclass
class PlotConfig(Settings):
    out: str = setting(
        required=True, help="Image to write; the format follows the suffix: .png, .svg or .pdf."
    )
    figure: str = setting(cli=False, default="")  # the command's first argument
    inputs: list[str] = setting(cli=False, default=[])  # the runs or files after it
    pick: str = setting(
        "all",
        "correlation: which classes: all, N (a seeded draw of N, --seed), a file of class names (one a "
        "line) or names 'a,b,c'; written beside the figure (NAME.classes.txt).",
    )
    seed: int = borrow(OptimConfig, "seed", help="correlation --pick N: the seed of the draw.")

    def validate(self) -> None:
        problems: list[str] = []
        if self.figure not in FIGURES:
            problems.append(f"tkvr plot {self.figure!r}: choose correlation, fractions, loss or accuracy")
        if not self.inputs:
            problems.append("give the runs (or, for correlation, an embeddings file) to draw from")
        elif self.figure == "correlation" and len(self.inputs) > 2:
            problems.append(
                f"tkvr plot correlation draws one head, or two side by side; {len(self.inputs)} inputs given"
            )
        if self.pick != "all" and self.figure != "correlation":
            problems.append("--pick chooses the classes of a correlation map; leave it out here")
        if self.pick.strip().isdigit() and int(self.pick) < 2:
            problems.append(f"--pick {self.pick}: a correlation needs 2 or more classes")
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
    if cfg.figure == "correlation":
        wrote(drawn["classes_file"], f"the {len(drawn['classes'])} classes drawn ({drawn['picked']})")


COMMAND = Command(
    "plot",
    PlotConfig,
    run,
    """Draw a figure of the paper from runs: correlation (Fig. 1), fractions (Fig. 3), loss (Fig. 4);
    and accuracy: validation top-1 over the epochs of runs (also of a run still training).

    \b
    Examples:
      tkvr plot correlation runs/k400_learned --out corr.png      # a run's head, or an embeddings file
      tkvr plot correlation k400_text.pt runs/k400_learned --pick 20 --out fig1.png   # Figure 1
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
                "help": "correlation: one embeddings file, checkpoint or run, or two side by side "
                "(Figure 1: text embeddings left, a learned head right); fractions, "
                "loss and accuracy: runs, or folders of runs.",
            },
        ),
    ),
)
