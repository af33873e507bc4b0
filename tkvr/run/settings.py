"""The optimiser, run and device groups' settings, the training run they compose (`TrainConfig`,
what a run's config.yaml and checkpoints record) and the recipes; the declarations several
commands borrow (`Shared`), and the settings of the two commands the demo runs as steps
(`EvalConfig`, `ZeroshotConfig`: library settings, so no command imports another). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import writable
from tkvr.base.settings import (
    Settings,
    at_least,
    borrow,
    build,
    choice_problems,
    fail_if,
    figure_problems,
    plain,
    setting,
)
from tkvr.data.settings import SPLITS, DataConfig, EvalSource, SourceConfig, eval_problems
from tkvr.model.settings import ModelConfig
from tkvr.run.trackers import logger_problems

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "fsdp")
DECAY = ("all", "matrices")
SCHEDULES = ("cosine", "step", "constant")
SHOT_SCHEDULES = ("released", "paper")
ALL_SHOTS = 0  # K = "all": the full training split, the fully supervised row of Table 8


def parse_loggers(given: list[str] | str) -> list[str]:
    """--logger, repeated or a comma list ('tensorboard,wandb'): the names, each once."""
    given = [given] if isinstance(given, str) else given
    return list(dict.fromkeys(x.strip() for v in given for x in str(v).split(",") if x.strip()))


def shots_text(shots: list[int]) -> str:
    """[1, 3, ALL_SHOTS] -> '1,3,all', as --shots is typed."""
    return ",".join("all" if k == ALL_SHOTS else str(k) for k in shots)


def parse_shots(text: str | list[str]) -> list[int]:
    """'1,3,5,all' (or those words as a list, from a YAML file) -> [1, 3, 5, ALL_SHOTS]."""
    text = ",".join(text) if isinstance(text, list) else text
    words = [x.strip().lower() for x in str(text).split(",") if x.strip()]
    try:
        numbers = [int(x) for x in words if x != "all"]
    except ValueError:
        raise TkvrError(
            f"--shots {text!r} must be a comma list of integers or 'all', e.g. 1,3,5,all"
        ) from None
    if not words or any(k < 1 for k in numbers):
        raise TkvrError(f"--shots {text!r}: every K must be >= 1 (or 'all')")
    twice = sorted({w for w in words if words.count(w) > 1 or (w != "all" and numbers.count(int(w)) > 1)})
    if twice:  # each K is one run folder: a second would meet the first's
        raise TkvrError(f"--shots {text!r}: K {twice[0]} appears twice; give each K once")
    return [ALL_SHOTS if x == "all" else int(x) for x in words]


# The toy recipe: the paper's, scaled for a 3M-parameter model and an 864-clip dataset.
# A 0.47M-parameter visual encoder and 864 clips need a larger step than CLIP ViT-B on Kinetics:
# lr 3e-4 for the backbone and the paper's 10x for new modules (the temporal transformer, which
# starts from scratch, and the vision-only head alike). What it changes besides, and why: the
# near-TAP T-Trans form (a 2-layer transformer from scratch would otherwise add its random output
# to the toy CLIP's features at step 0); no grayscale and no RandAugment (the toy classes are
# colours: both would erase or change the class); TSN's multi-scale crop; eval frames resized to
# the crop size, not x 256/224 (64-pixel frames whose objects reach the border: the released crop
# would cut them off). Everything else is the default (the paper's, or the released code's at
# 238c07f): the toy CLIP's own logit scale, learned; weight decay on every parameter; views
# averaged as features.
TOY_RECIPE = dict(
    backbone="toy",
    frames=8,
    temporal="t-trans",
    temporal_layers=2,
    batch_size=32,
    lr=3e-4,
    new_lr_ratio=10.0,
    warmup=1.0,
    weight_decay=0.2,
    train_crop="multiscale",
    t_trans_form="near-tap",
    grayscale=0.0,
    randaugment="off",
    test_scale=1.0,
)
RECIPES = {"paper": {}, "toy": TOY_RECIPE}


@dataclass
class DeviceConfig(Settings):
    """Lightning Fabric: where and how the model runs."""

    accelerator: str = setting("auto", "cpu, gpu, cuda, mps, or auto.")
    devices: int = setting(1, "Devices per node.")
    num_nodes: int = setting(1, "Nodes (torchrun / SLURM / Fabric launcher).")
    strategy: str = setting("auto", "Distributed strategy.", choices=STRATEGIES)
    precision: str = setting(
        "auto",
        "Numeric precision; auto: bf16-mixed on CUDA devices with bf16, 16-mixed on "
        "older CUDA, bf16-mixed for scoring on CPUs that compute bf16 natively (AVX512-BF16, "
        "AMX), 32-true elsewhere (the run records what auto became).",
        choices=PRECISIONS,
    )
    verbose: bool = setting(
        False, "Also show the libraries' own messages (Lightning, Fabric, transformers, the hub, warnings)."
    )

    @property
    def world(self) -> int:
        return self.devices * self.num_nodes

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        at_least(problems, self, 1, "devices", "num_nodes")
        return problems


@dataclass
class OptimConfig(Settings):
    epochs: int = setting(30, "Epochs.")
    batch_size: int = setting(128, "Global batch = device batch x devices x nodes x accumulation.")
    device_batch: int | None = setting(None, "Per-device batch.", shown="batch / devices")
    lr: float = setting(5e-6, "Learning rate of the visual encoder.")
    new_lr_ratio: float = setting(10.0, "New modules (temporal module, learned head) train at lr x this.")
    weight_decay: float = setting(0.2, "AdamW weight decay.")
    decay: str = setting(
        "all",
        "Which parameters weight decay applies to: all (as released train.py at 238c07f, the logit scale "
        "included) or matrices (not norms, biases, embeddings, positions, the head).",
        choices=DECAY,
    )
    betas: tuple[float, float] = setting((0.9, 0.98), cli=False)
    warmup: float = setting(5.0, "Warm-up epochs (the learning rate rises linearly from 0).")
    schedule: str = setting(
        "cosine",
        "The learning rate after the warm-up: cosine (down to 0, the paper's), step (x0.1 at "
        "50% and again at 75% of the steps after the warm-up) or constant.",
        choices=SCHEDULES,
    )
    grad_clip: float | None = setting(None, "Clip the gradient norm to this.")
    batch_gather: bool = setting(
        False,
        "--objective matching: compare each video and text with those of every "
        "process (all_gather before the similarity matrix), not only its own "
        "batch.",
    )
    grad_checkpointing: bool = setting(False, "Recompute backbone activations to save memory.")
    fused: bool | None = setting(
        None, "Fused AdamW kernel.", negatable=True, shown="on for CUDA devices, off elsewhere"
    )
    seed: int = setting(0, "Seed of everything random.")
    max_steps: int | None = setting(None, "Stop after this many optimiser steps (smoke runs).")
    limit_batches: int | None = setting(None, "Batches per epoch at most (smoke runs).")
    limit_val_batches: int | None = setting(
        None, "Validation batches at most, each epoch's (smoke runs; the report says how many clips)."
    )

    def accumulation(self, world: int) -> int:
        device_batch = self.device_batch or self.batch_size // world
        return self.batch_size // (device_batch * world)

    def validate(self, world: int = 1) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        at_least(
            problems,
            self,
            1,
            "epochs",
            "batch_size",
            "device_batch",
            "max_steps",
            "limit_batches",
            "limit_val_batches",
        )
        if self.grad_clip is not None and not self.grad_clip > 0:  # torch clips nothing at <= 0, differently
            problems.append(f"--grad-clip {self.grad_clip:g}: give a positive gradient norm, or leave it out")
        if not 0 <= self.seed < 2**63 - 2**16:  # torch keeps seeds in 64 bits; seed + K for the repeats
            problems.append(f"--seed {self.seed}: give a whole number from 0 to 2**63 - 65537")
        if self.batch_size >= 1 and (self.device_batch is None or self.device_batch >= 1) and world >= 1:
            device_batch = self.device_batch or (
                self.batch_size // world if self.batch_size % world == 0 else 0
            )
            if device_batch < 1 or self.batch_size % (device_batch * world):
                problems.append(
                    f"--batch-size {self.batch_size} is not divisible by --device-batch "
                    f"{self.device_batch or '(auto)'} x {world} device(s); pick sizes with "
                    "batch-size = device-batch x devices x nodes x accumulation"
                )
        if self.lr <= 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            problems.append(f"--warmup must be >= 0, got {self.warmup}")
        return problems


@dataclass
class RunConfig(Settings):
    out: str = setting("runs/tkvr", "Run directory.")
    resume: str | None = setting(None, "auto (this run's last checkpoint, if any) or a checkpoint PATH.")
    init: str | None = setting(
        None,
        "Start from another run's weights (a converted released model too): its visual encoder, "
        "temporal module and logit scale; the head is this run's classes'. Model settings not "
        "given are that run's.",
    )
    eval_every: int = setting(1, "Validate every N epochs.")
    log_every: int = setting(10, "Steps between rows of steps.csv.")
    recipe: str = setting(
        "paper",
        "Defaults for the recipe: paper (the paper's and the released code's) or toy (the demo's, "
        "for the toy world and small models: lr 3e-4, t-trans, batch 32, ...). Flags given win; "
        "config.yaml records which settings the recipe set.",
        choices=tuple(RECIPES),
    )
    from_recipe: list[str] | None = setting(None, cli=False)  # the settings --recipe set
    save_every: int | None = setting(
        None, "Also keep checkpoints/epoch_N.pt every N epochs (last.pt and best.pt are always kept)."
    )
    compile: bool = setting(False, "torch.compile the visual encoder.")
    logger: list[str] | None = setting(
        None,
        "Experiment trackers besides the CSV logs (repeat it or give a list): tensorboard, wandb, "
        "mlflow (pip install 'tkvr[wandb]', 'tkvr[mlflow]'). Each gets the config, step losses, "
        "epoch metrics and the final report.",
        shown="csv only",
        parse=parse_loggers,
    )
    tensorboard: bool = setting(False, "Same as --logger tensorboard (kept for older command lines).")
    command: str = setting("", cli=False)  # the command line, for the report
    dry_run: bool = setting(
        False,
        "Check every flag, resolve every setting (auto values included) and print them "
        "as YAML with the model's cost; write nothing, train nothing.",
    )

    @property
    def loggers(self) -> list[str]:
        """--logger's trackers with --tensorboard's, each once."""
        return list(dict.fromkeys((self.logger or []) + (["tensorboard"] if self.tensorboard else [])))

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        logger_problems(problems, self.loggers)
        at_least(problems, self, 1, "eval_every", "log_every", "save_every")
        if self.init and not Path(self.init).exists():
            problems.append(f"--init {self.init}: no such file or run directory")
        return problems


@dataclass
class TrainConfig(Settings):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)

    def problems(self) -> list[str]:
        problems = (
            self.model.validate()
            + self.data.validate()
            + self.optim.validate(self.device.world)
            + self.run.validate()
            + self.device.validate()
        )
        if self.optim.batch_gather and self.model.objective != "matching":
            problems.append(
                "--batch-gather gathers the matching objective's embeddings; add --objective matching"
            )
        o, world = self.optim, self.device.world
        pair = o.device_batch or (o.batch_size // world if world >= 1 else 0)
        if self.model.objective == "matching" and 1 <= pair < 2 and not (o.batch_gather and world > 1):
            flag = f"--device-batch {o.device_batch}" if o.device_batch else f"--batch-size {o.batch_size}"
            problems.append(
                f"--objective matching contrasts each video with the others of its batch: {flag} "
                f"gives {pair} per device, which forms no pair; use 2 or more (or --batch-gather "
                "across devices)"
            )
        group = self.model.match_group
        if group and o.batch_gather:
            problems.append(
                "--match-group contrasts groups within a device step; --batch-gather contrasts every "
                "device's clips together: give one"
            )
        elif group and pair >= 1 and pair % group:
            problems.append(
                f"--match-group {group}: a device step holds {pair} clips, not a multiple of {group}; "
                f"pick a group that divides it"
            )
        return problems

    def validate(self) -> None:
        problems = self.problems()
        writable(problems, "--out", self.run.out, folder=True)  # the protocols check their own --out
        fail_if(problems)

    def to_dict(self) -> dict:
        d = plain(self)  # typed settings as their text: config.yaml records what was typed
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """config.yaml's groups -> config (a checkpoint's earlier layouts: tkvr.run.checkpoint.migrate)."""
        d = {k: dict(v) for k, v in d.items()}
        d["optim"]["betas"] = tuple(d["optim"]["betas"])
        return cls(
            ModelConfig(**d["model"]),
            DataConfig(**d["data"]),
            OptimConfig(**d["optim"]),
            RunConfig(**d["run"]),
            DeviceConfig(**d["device"]),
        )

    @classmethod
    def from_flags(cls, flags: dict) -> "TrainConfig":
        """Flat setting names -> grouped, validated config: a script's boundary, as the command
        line is the user's. Unknown names are an error; every value is checked as the command line
        checks it (choices by the same declarations click uses)."""
        cfg = build(cls, flags, strict=True)
        cfg.validate()
        return cfg


@dataclass
class Shared(Settings):
    """Declarations borrowed by several commands (never a command's settings itself)."""

    checkpoint: str = setting(
        required=True,
        help="Run directory (its final weights, checkpoints/last.pt) or a checkpoint file (e.g. "
        "RUN/checkpoints/best.pt).",
    )
    json: str | None = setting(None, "Write the report here as JSON (written whole or not at all).")
    split: str = setting("train", "Which split to scan.", choices=SPLITS)
    plot: str | None = setting(
        None, "Also draw the inter-class correlation map to this PNG (needs matplotlib)."
    )
    labels: str | None = setting(None, 'Class names: "a,b,c" or a labels file (open vocabulary).')
    batch_size: int = setting(16, "Videos per device and batch.")


@dataclass
class EvalConfig(Settings):
    checkpoint: str = borrow(Shared, "checkpoint")
    source: EvalSource = field(default_factory=EvalSource)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    split: str = borrow(Shared, "split", default="val", help="Split to score.")
    views: tuple[int, int] = borrow(DataConfig, "views")
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

    def validate(self) -> None:
        problems = self.source.validate() + self.device.validate() + choice_problems(self, nested=False)
        problems += eval_problems(self.test_scale, self.view_average)
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
