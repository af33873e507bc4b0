"""Typed settings for every command. No torch here: `tkvr --help` must stay fast.

Validation collects every problem and names the flag the user typed; the CLI prints them as one
line (problems joined by '; ') and exits with code 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tkvr.errors import TkvrError

# Registries' names, kept here so the CLI can validate and show them without importing torch.
TEMPORAL = ("tap", "t1d", "token-t1d", "t-trans")
HEADS = ("text", "random", "orthogonal", "lda", "learned")


def fail_if(problems: list[str]) -> None:
    if problems:
        raise TkvrError("; ".join(problems))


@dataclass
class ModelConfig:
    backbone: str = "ViT-B/16"
    pretrained: str | None = None
    frames: int = 8
    temporal: str = "tap"
    temporal_layers: int = 6
    t1d_blocks: list[int] | None = None
    head: str = "text"
    unfreeze_head: bool = False
    templates: list[str] | None = None  # prompt templates; None: the dataset's default
    lda_samples: int = 60  # --head lda: videos per class whose features fit it

    def validate(self) -> list[str]:
        problems = []
        if self.frames < 1:
            problems.append(f"--frames must be >= 1, got {self.frames}")
        if self.temporal not in TEMPORAL:
            problems.append(f"--temporal {self.temporal!r} is not known: choose one of {', '.join(TEMPORAL)}")
        if self.head not in HEADS:
            problems.append(f"--head {self.head!r} is not known: choose one of {', '.join(HEADS)}")
        if self.temporal_layers < 1:
            problems.append(f"--temporal-layers must be >= 1, got {self.temporal_layers}")
        return problems


@dataclass
class EmbedConfig:
    classes: str
    out: str
    backbone: str = "ViT-B/16"
    pretrained: str | None = None
    templates: list[str] = field(default_factory=list)
    head: str = "text"
    seed: int = 0
    plot: str | None = None
    text_encoder: str | None = None

    def validate(self) -> list[str]:
        problems = []
        if self.text_encoder and self.head != "text":
            problems.append("--text-encoder only makes --head text")
        if self.head not in ("text", "random", "orthogonal"):
            problems.append(f"--head {self.head!r}: tkvr embed writes text, random or orthogonal "
                            "(lda is fitted from visual features by tkvr train --head lda)")
        if not self.out:
            problems.append("--out is required: the file to write")
        return problems


PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "fsdp")


@dataclass
class DataConfig:
    data: str = "toy"
    data_root: str | None = None
    fold: int = 1
    decoder: str = "auto"
    decode_device: str = "cpu"
    workers: int | None = None
    label_fraction: float = 1.0
    max_bad_fraction: float = 0.05
    train_crop: str = "rrc"
    views: str = "1x1"  # eval views during training

    def validate(self) -> list[str]:
        problems = []
        if not 0 < self.label_fraction <= 1:
            problems.append(f"--label-fraction must be in (0, 1], got {self.label_fraction}")
        if not 0 <= self.max_bad_fraction <= 1:
            problems.append(f"--max-bad-fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.train_crop not in ("rrc", "multiscale"):
            problems.append(f"--train-crop {self.train_crop!r}: choose rrc or multiscale")
        if self.workers is not None and self.workers < 0:
            problems.append(f"--workers must be >= 0, got {self.workers}")
        return problems


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 128  # global: device batch x devices x nodes x accumulation
    device_batch: int | None = None  # per device and step; default: batch_size / world size
    lr: float = 5e-6  # visual encoder
    new_lr_ratio: float = 10.0  # new modules (temporal, learned head) train at lr x this
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: float = 5.0  # epochs
    grad_clip: float | None = None
    grad_checkpointing: bool = False
    fused: bool | None = None  # fused AdamW: default on where the device supports it
    seed: int = 0
    max_steps: int | None = None
    limit_batches: int | None = None

    def accumulation(self, world: int) -> int:
        device_batch = self.device_batch or self.batch_size // world
        return self.batch_size // (device_batch * world)

    def validate(self, world: int = 1) -> list[str]:
        problems = []
        if self.epochs < 1:
            problems.append(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be >= 1, got {self.batch_size}")
        else:
            device_batch = self.device_batch or (self.batch_size // world if self.batch_size % world == 0 else 0)
            if device_batch < 1 or self.batch_size % (device_batch * world):
                problems.append(f"--batch-size {self.batch_size} is not divisible by --device-batch "
                                f"{self.device_batch or '(auto)'} x {world} device(s); pick sizes with "
                                "batch-size = device-batch x devices x nodes x accumulation")
        if self.lr <= 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            problems.append(f"--warmup must be >= 0, got {self.warmup}")
        for name in ("max_steps", "limit_batches"):
            v = getattr(self, name)
            if v is not None and v < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        return problems


@dataclass
class RunConfig:
    out: str = "runs/tkvr"
    resume: str | None = None  # auto | PATH
    eval_every: int = 1
    log_every: int = 10  # steps between rows of steps.csv
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    compile: bool = False
    embeddings: str | None = None
    tensorboard: bool = False
    command: str = ""  # the command line, for the report

    @property
    def world(self) -> int:
        return self.devices * self.num_nodes

    def validate(self) -> list[str]:
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            problems.append(f"--strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.devices < 1 or self.num_nodes < 1:
            problems.append("--devices and --num-nodes must be >= 1")
        if self.eval_every < 1:
            problems.append(f"--eval-every must be >= 1, got {self.eval_every}")
        return problems


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        fail_if(self.model.validate() + self.data.validate() + self.optim.validate(self.run.world)
                + self.run.validate())

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        optim = dict(d["optim"])
        optim["betas"] = tuple(optim["betas"])
        return cls(ModelConfig(**d["model"]), DataConfig(**d["data"]), OptimConfig(**optim), RunConfig(**d["run"]))

    @classmethod
    def from_flags(cls, flags: dict) -> "TrainConfig":
        """Flat flag names (as click gives them) -> grouped config; unknown names are an error."""
        from dataclasses import fields

        groups = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}
        parts: dict[str, dict] = {g: {} for g in groups}
        owner = {f.name: g for g, c in groups.items() for f in fields(c)}
        unknown = [k for k in flags if k not in owner]
        if unknown:
            raise TkvrError(f"unknown setting {unknown[0]!r}")
        for k, v in flags.items():
            parts[owner[k]][k] = v
        return cls(**{g: groups[g](**parts[g]) for g in groups})
