"""tkvr zeroshot: unseen classes recognised by swapping the classifier (the paper's Table 9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rich.table import Table

from tkvr.base.fileio import writable
from tkvr.base.progress import console
from tkvr.base.settings import Settings, borrow, choice_problems, fail_if, setting
from tkvr.commands.shared import Command, Shared
from tkvr.data.settings import SourceConfig
from tkvr.run.settings import RunConfig, TrainConfig

EVAL_SETS = ("auto", "all", "val")


@dataclass
class ZeroshotConfig(Settings):
    train: TrainConfig = field(default_factory=TrainConfig)  # train.data.data: the SEEN classes
    seen: str = borrow(
        SourceConfig,
        "data",
        default="toy@seen",
        flag="--train",
        help="Seen classes: a dataset or class subset (K300, IN600, ...).",
    )
    eval_data: str = borrow(
        SourceConfig,
        "data",
        default="toy@unseen",
        flag="--eval",
        help="Unseen classes (K100, IN400, ucf101, ...).",
    )
    no_train: bool = setting(
        False,
        "Only the pre-trained model (the 'w/o train' row; Table 10's K = 0; its frames "
        "averaged, whatever --temporal says): --eval may then be any dataset, all its classes "
        "scored, whatever --train says.",
    )
    checkpoint: str | None = borrow(
        Shared,
        "checkpoint",
        default=None,
        required=False,
        help="Score this run's model (e.g. a converted released model, tkvr convert) as the first row "
        "instead of the pre-trained model: the unseen names swapped in, its own frames and test scale.",
        shown="the pre-trained model",
    )
    protocol: str = setting(
        "full",
        "full: all eval classes (Text4Vis); half: mean ± std over 10 seeded random "
        "halves (the protocol of other zero-shot papers, kept for comparing with them).",
        choices=("full", "half"),
    )
    eval_set: str = setting(
        "auto",
        "Which videos of --eval are scored: all (every video of the dataset, train and "
        "val lists together, as the released cross-dataset evaluation (092ad0a) scores all "
        "13,320 UCF-101 and 6,766 HMDB-51 videos) or val (its validation split, one "
        "fold's test list); auto: all when --eval is another dataset than --train, "
        "val when it is a class subset of the same one (K100).",
        choices=EVAL_SETS,
    )
    out: str = borrow(RunConfig, "out", default="runs/zeroshot", help="Folder of the runs.")
    json: str | None = borrow(Shared, "json")
    hidden: ClassVar[tuple] = ("data", "out", "resume")

    def validate(self) -> None:
        problems = self.train.problems() + choice_problems(self, nested=False)
        writable(problems, "--out", self.out, folder=True)
        writable(problems, "--json", self.json)
        fail_if(problems)


def run(cfg: ZeroshotConfig) -> dict:
    from tkvr.run.protocols import zeroshot  # deferred: tkvr --help loads no torch

    return zeroshot(cfg)


def show(out: dict, cfg) -> None:
    t = Table(title=f"zero-shot: train {out['train']}, eval {out['eval']} ({out['protocol']} protocol)")
    t.add_column("row")
    t.add_column("top-1 %", justify="right")
    names = {"without_training": "w/o train (pre-trained, TAP)", "with_training": "w/ train on seen classes"}
    for k, name in names.items():
        if k in out:
            by = out[k].get("scored_by", {})
            if "checkpoint" in by:
                name = f"w/o train: {by['checkpoint']}"
            elif k == "with_training" and by:
                name += f" ({by['temporal']})"
            r = out[k]
            t.add_row(name, f"{r['top1']:.2f}" + (f" ± {r['std']:.2f}" if "std" in r else ""))
    console().print(t)


COMMAND = Command(
    "zeroshot",
    ZeroshotConfig,
    run,
    """Zero-shot recognition of unseen classes (the paper's Table 9): w/o and w/ training.

    \b
    Example:
      tkvr zeroshot --train K300 --eval K100 --data-root /data --backbone ViT-B/16 --protocol half
    """,
    show=show,
    config_file=True,
)
