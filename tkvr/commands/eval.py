"""tkvr eval: a checkpoint scored on a split (top-1, top-5, mean class, per class)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, say
from tkvr.base.settings import Settings, at_least, borrow, fail_if, figure_problems, setting
from tkvr.commands.shared import Command, Shared
from tkvr.data.settings import DataConfig, EvalSource, eval_problems, parse_views
from tkvr.run.settings import DeviceConfig, RunConfig


@dataclass
class EvalConfig(Settings):
    checkpoint: str = borrow(Shared, "checkpoint")
    source: EvalSource = field(default_factory=EvalSource)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    split: str = borrow(Shared, "split", default="val", help="Split to score.")
    views: str = borrow(DataConfig, "views")
    test_scale: float | None = borrow(DataConfig, "test_scale", default=None, shown="the checkpoint's")
    view_average: str | None = borrow(DataConfig, "view_average", default=None, shown="the checkpoint's")
    labels: str | None = setting(None, "'data': embed the eval data's class names (zero-shot swap).")
    batch_size: int = borrow(Shared, "batch_size")
    json: str | None = borrow(Shared, "json")
    per_class: str | None = setting(
        None,
        "Write per-class results here as CSV: class, samples, top-1 %, the class it is most often "
        "taken for and how often.",
    )
    plot: str | None = borrow(
        Shared,
        "plot",
        help="Draw the confusion matrix (rows: true class, normalised) here (.png, .svg or .pdf; "
        "needs matplotlib).",
    )
    dry_run: bool = borrow(
        RunConfig,
        "dry_run",
        help="Check the flags and the checkpoint, print the resolved "
        "settings and the model's cost as YAML; score nothing.",
    )

    @property
    def view_pair(self) -> tuple[int, int]:
        """--views as (C temporal clips, S spatial crops); the setting records the text."""
        return parse_views(self.views)

    def validate(self) -> None:
        problems = self.source.validate() + self.device.validate()
        problems += eval_problems(self.views, self.test_scale, self.view_average)
        at_least(problems, self, 1, "batch_size")
        if self.labels not in (None, "data"):
            problems.append(
                f"--labels {self.labels!r}: the only value is 'data' (embed the eval data's names); "
                "for other names use tkvr predict --labels"
            )
        figure_problems(problems, "--plot", self.plot)
        for flag, path in (("--json", self.json), ("--per-class", self.per_class)):
            writable(problems, flag, path)
        fail_if(problems)


def run(cfg: EvalConfig) -> dict:
    from tkvr.run.evaluation import evaluate_checkpoint  # deferred: tkvr --help loads no torch

    return evaluate_checkpoint(cfg)


def show(report: dict, cfg) -> None:
    t = Table(title=f"{report['data']} / {report['split']}, views {report['views']}")
    for col in ("top-1 %", "top-5 %", "mean class %", "samples", "GFLOPs x views", "params (M)"):
        t.add_column(col, justify="right")
    c, s = parse_views(report["views"])
    t.add_row(
        f"{report['top1']:.2f}",
        f"{report['top5']:.2f}",
        f"{report['mean_class_accuracy']:.2f}",
        str(report["num_samples"]),
        f"{report['gflops_per_view']:.3g} x {c * s}",
        f"{report['params_m']:.2f}",
    )
    console().print(t)
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
