"""tkvr fewshot: K-shot C-way runs over all classes (the paper's Table 8), one per K and seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console, say
from tkvr.base.settings import Settings, at_least, borrow, choice_problems, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.run.settings import SHOT_SCHEDULES, RunConfig, Shared, TrainConfig, parse_shots, shots_text


@dataclass
class FewshotConfig(Settings):
    train: TrainConfig = field(default_factory=TrainConfig)
    shots: list[int] = setting(
        "1,3,5,all",
        "K values to sweep, comma-separated; 'all' is the full training split "
        "(the paper's Table 8: 1, 3, 5 and All).",
        parse=parse_shots,
        text=shots_text,
    )
    shot_schedule: str = setting(
        "paper",
        "How long a K-shot run trains: paper (the paper's text, line 273: --shot-epochs passes over "
        "the sample itself) or released (the released few-shot configs at 092ad0a: the sample "
        "repeated to the length of the full training split, --epochs epochs).",
        choices=SHOT_SCHEDULES,
    )
    shot_epochs: int = setting(
        200, "--shot-schedule paper: passes over each K-shot sample (the paper, line 273: 200)."
    )
    repeats: int = setting(1, "Seeds per K (seed, seed+1, ...): mean ± std.")
    sample: str | None = setting(None, "Replay a saved sample (sample.json of a run) instead of drawing one.")
    epoch_size: int | None = setting(
        None,
        "Clips per epoch: the sample repeated to this length.",
        shown="released: the training split's length; paper: the sample, once",
    )
    out: str = borrow(
        RunConfig,
        "out",
        default="runs/fewshot",
        help="Folder of the sweep; one run directory per K and seed.",
    )
    json: str | None = borrow(Shared, "json")
    hidden: ClassVar[tuple] = ("out", "resume")  # of the train group: one run per K and seed, fresh

    def validate(self) -> None:
        problems = self.train.problems()
        at_least(problems, self, 1, "repeats", "epoch_size", "shot_epochs")
        problems += choice_problems(self, nested=False)
        writable(problems, "--out", self.out, folder=True)
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: FewshotConfig) -> dict:
    from tkvr.run.protocols import fewshot  # deferred: tkvr --help loads no torch

    return fewshot(cfg)


def show(results: dict, cfg) -> None:
    head, data = cfg.train.model.head, cfg.train.data.data
    t = Table(title=f"few-shot {data}, head {head}: top-1 % (mean ± std over seeds)")
    t.add_column("shots", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("runs", justify="right")
    for k, v in results.items():
        mark = " (partial)" if v.get("partial") else ""
        t.add_row(str(k), f"{v['top1']:.2f} ± {v['std']:.2f}{mark}", str(len(v["runs"])))
    console().print(t)
    if any(v.get("partial") for v in results.values()):
        say("partial: --max-steps stopped those runs early; their top-1 scores the weights they had")


COMMAND = Command(
    "fewshot",
    FewshotConfig,
    run,
    """K-shot C-way training over all classes (the paper's Table 8), one run per K and seed.

    \b
    Example:
      tkvr fewshot --data k400 --data-root /data --backbone ViT-B/16 --shots 1,3,5,all --repeats 3
    """,
    show=show,
    config_file=True,
)
