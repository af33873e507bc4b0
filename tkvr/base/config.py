"""The setting groups (source, device, model, data, optim, run) and one config class per command,
each setting declared once with `tkvr.base.settings.setting`; validation that collects every
problem and names the flag the user typed.

Settings whose value depends on a checkpoint or a dataset (`--fold`, `--data` of eval,
templates) default to None, "unset", until the command resolves them; a literal default would
hide the checkpoint's value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tkvr.base.choices import (
    CLASS_NAMES,
    CROPS,
    DECAY,
    DECODERS,
    EVAL_SETS,
    FIGURES,
    HEADS,
    OBJECTIVES,
    PRECISIONS,
    RANDAUG,
    SCHEDULES,
    SHOT_SCHEDULES,
    SPLITS,
    STRATEGIES,
    SUFFIXES,
    T1D_FORMS,
    TEMPLATE_MODES,
    TEMPORAL,
    TTRANS_FORMS,
    VIEW_AVERAGE,
    parse_shots,
    parse_views,
)
from tkvr.base.errors import TkvrError
from tkvr.base.fileio import writable
from tkvr.base.settings import Settings, borrow, build, choice_problems, fail_if, setting


def _at_least(problems: list[str], obj, minimum, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if v is not None and v < minimum:
            problems.append(f"--{name.replace('_', '-')} must be >= {minimum}, got {v}")


MAX_FRAMES = 512  # frames per clip: published recipes use 8 to 32; memory grows with it


def _frames(problems: list[str], obj) -> None:
    """--frames from 1 to MAX_FRAMES: refused up front, not after the memory has run out."""
    _at_least(problems, obj, 1, "frames")
    if obj.frames is not None and obj.frames > MAX_FRAMES:
        problems.append(f"--frames {obj.frames}: at most {MAX_FRAMES} frames a clip")


def _figure(problems: list[str], flag: str, path: str | None) -> None:
    """A figure to write: its suffix names a format matplotlib writes, and it can be written."""
    if path and Path(path).suffix.lower() not in SUFFIXES:
        problems.append(f"{flag} {path}: end the name in .png, .svg or .pdf")
    writable(problems, flag, path)


def _views(problems: list[str], spec: str) -> None:
    try:
        parse_views(spec)
    except TkvrError as e:
        problems.append(str(e))


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
# The model settings that shape a run's weights: a resumed run must share them, and `train --init`
# takes them from the run it starts from.
SHAPE_KEYS = (
    "backbone",
    "pretrained",
    "visual",
    "frames",
    "temporal",
    "temporal_layers",
    "t_trans_form",
    "t1d_form",
    "t1d_blocks",
    "logit_scale",
)  # --recipe: paper is every setting's own default


# ---------------------------------------------------------------- shared groups
@dataclass
class SourceConfig(Settings):
    """Which samples, read how: every command that reads a dataset."""

    data: str | None = setting(
        "toy",
        "Built-in name (k400, k600, ucf101, hmdb51, imagenet, toy), a YAML dataset "
        "file or a folder; add @SUBSET for a class subset (k400@K300, ucf101@classes.txt).",
    )
    data_root: str | None = setting(None, "Folder holding the built-in datasets [env: TKVR_DATA_ROOT].")
    fold: int | None = setting(None, "UCF-101 / HMDB-51 official split number (1-3).", shown="1")
    decoder: str = setting(
        "auto",
        "Video decoder; auto takes torchcodec when FFmpeg's libraries load, else PyAV. "
        "AVIs are read by PyAV either way.",
        choices=DECODERS,
    )
    decode_device: str = setting("cpu", "torchcodec decode device, e.g. cuda (NVDEC).")
    workers: int | None = setting(
        None, "Reader processes (DataLoader workers).", shown="cores per device - 1"
    )

    def fold_or(self, fallback: int = 1) -> int:
        return self.fold if self.fold is not None else fallback

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        if self.fold is not None and not 1 <= self.fold <= 3:
            problems.append(f"--fold must be 1, 2 or 3, got {self.fold}")
        _at_least(problems, self, 0, "workers")
        if self.decode_device.startswith("cuda"):
            import torch  # deferred: keeps tkvr --help fast

            if not torch.cuda.is_available():
                problems.append(f"--decode-device {self.decode_device}: no CUDA device here; use cpu")
        return problems


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
        "older CUDA, 32-true elsewhere (the run records what auto became).",
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
        _at_least(problems, self, 1, "devices", "num_nodes")
        return problems


@dataclass
class ModelConfig(Settings):
    backbone: str = setting(
        "ViT-B/16",
        "OpenAI name (ViT-B/16, ViT-L/14, RN50, ...), open_clip name, "
        "hf-hub:ORG/REPO, or built-in tiny / tiny-rn / toy.",
    )
    pretrained: str | None = setting(
        None,
        "Weight tag (e.g. laion2b_s34b_b88k), a local checkpoint PATH, or "
        "'none'. OpenAI names default to 'openai'.",
    )
    visual: str | None = setting(
        None,
        "timm:NAME: the visual tower from timm (e.g. an ImageNet-pretrained "
        "timm:vit_base_patch16_224) instead of CLIP's; --backbone still gives the "
        "text encoder for the head, and a trainable projection maps the timm "
        "width to the text width where they differ.",
        shown="CLIP's visual tower",
    )
    visual_pretrained: bool = setting(
        True,
        "--visual: load timm's pretrained weights (from the Hugging Face hub "
        "or its cache); --no-visual-pretrained builds it randomly initialised.",
        negatable=True,
    )
    frames: int = setting(8, "Frames T per clip.")
    temporal: str = setting("tap", "Temporal module.", choices=TEMPORAL)
    temporal_layers: int = setting(6, "Layers of t-trans.")
    t_trans_form: str = setting(
        "released",
        "--temporal t-trans: released is the authors' released form (238c07f), mean(x + "
        "Transformer(x + pos)), positions and linear weights N(0, 0.02); "
        "near-tap (tkvr's) adds the transformer's output to the frame mean "
        "through a projection initialised near zero (starts as TAP).",
        choices=TTRANS_FORMS,
    )
    t1d_form: str = setting(
        "released",
        "--temporal token-t1d: released is the authors' released module (238c07f; the [class] "
        "token's channels start shifted, a quarter one frame left, a quarter right, "
        "half kept, before the attention and before the MLP of every block); "
        "identity (tkvr's) starts as the identity at the input of the chosen blocks.",
        choices=T1D_FORMS,
    )
    t1d_blocks: list[int] | None = setting(
        None,
        "--temporal token-t1d: a ViT block (0-based, negative from the "
        "end) whose [class] token gets the temporal convolution; repeat "
        "for several.",
        shown="every block (released form); the last half (identity form)",
    )
    head: str = setting("text", "Classifier head.", choices=HEADS)
    unfreeze_head: bool = setting(False, "Train the head too.")
    logit_scale: str = setting(
        "learn",
        "Temperature of the cosine heads: learn (start from the pre-trained model's "
        "own logit scale, 100 for OpenAI CLIP, and train it with the visual encoder, "
        "as released at 238c07f), fixed (keep the pre-trained value), or a number (fixed at it). "
        "The learned head has none.",
    )
    templates: list[str] | None = setting(
        None,
        "Prompt template with {} for the class name; repeat to average several.",
        flag="--template",
        shown="the dataset's, e.g. 'a video of a person {}.'",
    )
    class_names: str = setting(
        "words",
        "How a class id reads in the prompt: words ('ApplyEyeMakeup' -> 'Apply Eye Makeup', "
        "'brush_hair' -> 'brush hair') or released (as the released label lists at 092ad0a spell them: "
        "underscores become spaces, 'ApplyEyeMakeup' stays joined).",
        choices=CLASS_NAMES,
    )
    template_mode: str = setting(
        "average",
        "How several templates make the text head: average (one classifier, "
        "the mean of the per-template embeddings: prompt ensembling) or "
        "augment (text augmentation: each step trains against one template's "
        "classifier, drawn by --seed and step; eval uses the average) or "
        "learn (CoOp-style: --prompt-length learned context vectors before "
        "each class name, through the frozen CLIP text encoder every step).",
        choices=TEMPLATE_MODES,
    )
    prompt_length: int = setting(8, "--template-mode learn: learned context vectors M before the class name.")
    objective: str = setting(
        "recognition",
        "recognition: cross-entropy over all classes against the frozen "
        "classifier (the paper's paradigm); matching: the video-text "
        "contrastive loss of the matching paradigm (Table 6), between "
        "videos and the text embeddings of their class names.",
        choices=OBJECTIVES,
    )
    label_smoothing: float = setting(
        0.0,
        "Label smoothing of the recognition loss: the target puts this much mass evenly on "
        "all classes (0: none).",
    )
    text_online: bool = setting(
        False,
        "--objective matching: train CLIP's text encoder too (online), at the "
        "visual encoder's lr; else its class embeddings stay fixed (offline).",
    )
    lda_samples: int = setting(60, "--head lda: videos per class to fit it on.")
    embeddings: str | None = setting(None, "Class embeddings from tkvr embed.", shown="computed on the fly")
    text_encoder: str | None = setting(
        None,
        "st:NAME_OR_PATH: embed the class names with a text-only "
        "sentence-transformers encoder instead of CLIP's text tower (pip "
        "install 'tkvr[text]'), mapped to the visual width by a fixed "
        "orthogonal map.",
        shown="CLIP's text tower",
    )

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        _at_least(problems, self, 1, "temporal_layers", "lda_samples", "prompt_length")
        _frames(problems, self)
        if self.prompt_length != 8 and self.template_mode != "learn":
            problems.append(
                f"--prompt-length {self.prompt_length} sets the learned context of --template-mode "
                f"learn; --template-mode is {self.template_mode}: leave it out"
            )
        if self.logit_scale not in ("learn", "fixed"):
            try:
                value = float(self.logit_scale)
            except (TypeError, ValueError):
                value = float("nan")
            if not 0 < value < float("inf"):
                problems.append(
                    f"--logit-scale {self.logit_scale!r}: use learn, fixed or a positive number (e.g. 100)"
                )
        if self.templates is not None:
            problems += template_problems(self.templates)
        if self.text_encoder and self.head != "text":
            problems.append(f"--text-encoder makes a text head; --head is {self.head}")
        if self.visual is not None and not self.visual.startswith("timm:"):
            problems.append(f"--visual {self.visual!r}: use timm:NAME (a timm model name)")
        elif self.visual and self.temporal in ("t1d", "token-t1d"):
            problems.append(
                f"--temporal {self.temporal} is inserted into CLIP's own ViT or ResNet; with --visual "
                "use tap or t-trans"
            )
        # independent checks: every conflict is reported, not only the first
        if self.template_mode in ("augment", "learn") and self.head != "text":
            problems.append(f"--template-mode {self.template_mode} shapes a text head; --head is {self.head}")
        if self.template_mode == "learn" and (self.text_encoder or self.embeddings or self.unfreeze_head):
            flag = (
                "--text-encoder"
                if self.text_encoder
                else "--embeddings"
                if self.embeddings
                else "--unfreeze-head"
            )
            problems.append(
                f"--template-mode learn trains context vectors through CLIP's own text encoder: "
                f"leave out {flag}"
            )
        if self.objective == "matching" and self.head != "text":
            problems.append(
                f"--objective matching matches videos with their class names' text; --head is {self.head}"
            )
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.objective == "matching":
            problems.append("--label-smoothing smooths the recognition loss; --objective matching has none")
        if self.text_online and self.objective != "matching":
            problems.append(
                "--text-online trains the text encoder under --objective matching; add it, or leave "
                "out --text-online"
            )
        if self.text_online and (self.text_encoder or self.embeddings or self.template_mode != "average"):
            flag = (
                "--text-encoder"
                if self.text_encoder
                else "--embeddings"
                if self.embeddings
                else f"--template-mode {self.template_mode}"
            )
            problems.append(f"--text-online trains CLIP's own text encoder on one template: leave out {flag}")
        if self.template_mode == "augment" and self.unfreeze_head:
            problems.append(
                "--template-mode augment keeps each template's classifier frozen: leave out --unfreeze-head"
            )
        if self.template_mode == "augment" and self.embeddings:
            problems.append(
                "--template-mode augment embeds each template on its own: leave out --embeddings "
                "(a file holds one averaged matrix)"
            )
        return problems


def template_problems(templates) -> list[str]:
    if isinstance(templates, str) or not list(templates):
        return ["--template: give one or more prompt templates, each with {} where the class name goes"]
    return [
        f"--template {t!r} must contain '{{}}' exactly once, where the class name goes"
        for t in templates
        if not isinstance(t, str) or t.count("{}") != 1
    ]


@dataclass
class DataConfig(SourceConfig):
    """The data settings of a training run."""

    label_fraction: float = setting(1.0, "Stratified fraction of the training labels.")
    max_bad_fraction: float = setting(
        0.05, "Stop when more than this share of training videos is unreadable."
    )
    train_crop: str = setting("rrc", "Train crop.", choices=CROPS)
    augment: str = setting(
        "auto",
        "Where training clips are cropped, resized, flipped and normalised: cpu (in the "
        "DataLoader workers) or device (on the accelerator, from uint8 frames; the same "
        "crops for the same seed); auto: device on CUDA, else cpu.",
        choices=("auto", "cpu", "device"),
    )
    crop_area: float = setting(
        0.08,
        "--train-crop rrc: smallest area of the random crop, as a fraction of the "
        "frame (0.08 as released at 238c07f; aspect 3/4 to 4/3).",
    )
    grayscale: float = setting(
        0.2,
        "Probability that a training clip is turned to grayscale (0.2 as released at 238c07f; "
        "0 for classes that are colours).",
    )
    randaugment: str = setting(
        "auto",
        "RandAugment (N=2 ops, magnitude 9) on the uint8 frames before the crop: "
        "frame (ops drawn for each frame, as in the paper-era log and 238c07f), clip (one draw for all "
        "the frames of a clip), off; auto: frame, except off in tkvr fewshot on "
        "UCF-101 and HMDB-51 (as the released few-shot configs at 092ad0a have it).",
        choices=RANDAUG,
    )
    views: str = setting("1x1", "Validation views C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3.")
    test_scale: float | None = setting(
        None,
        "Eval frames: short side resized to the crop size x this before the crops.",
        shown="as released test.py at 238c07f: 256/224 for 224-px input (short side 256), 1 otherwise",
    )
    view_average: str = setting(
        "features",
        "How views combine: features (the views' video embeddings averaged, "
        "then scored, as released test.py at 238c07f) or scores (softmax scores averaged).",
        choices=VIEW_AVERAGE,
    )

    def validate(self) -> list[str]:
        problems = super().validate()
        if not 0 < self.label_fraction <= 1:
            problems.append(f"--label-fraction must be in (0, 1], got {self.label_fraction}")
        if not 0 <= self.max_bad_fraction <= 1:
            problems.append(f"--max-bad-fraction must be in [0, 1], got {self.max_bad_fraction}")
        if not 0 < self.crop_area <= 1:
            problems.append(f"--crop-area must be in (0, 1], got {self.crop_area}")
        if not 0 <= self.grayscale <= 1:
            problems.append(f"--grayscale must be in [0, 1], got {self.grayscale}")
        problems += eval_problems(self.views, self.test_scale, self.view_average)
        return problems

    def randaugment_for(self, off: bool = False) -> str:
        """--randaugment auto resolved: frame, or off where the released config has none (`off`:
        the few-shot sweep on UCF-101 / HMDB-51)."""
        if self.randaugment != "auto":
            return self.randaugment
        return "off" if off else "frame"


def eval_problems(views: str | None, test_scale: float | None, view_average: str | None) -> list[str]:
    problems: list[str] = []
    if views is not None:
        _views(problems, views)
    if test_scale is not None and not 1 <= test_scale <= 4:
        problems.append(
            f"--test-scale must be in [1, 4] (1: resize the short side to the crop size), got {test_scale}"
        )
    if view_average is not None and view_average not in VIEW_AVERAGE:
        problems.append(f"--view-average {view_average!r}: choose features or scores")
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

    def accumulation(self, world: int) -> int:
        device_batch = self.device_batch or self.batch_size // world
        return self.batch_size // (device_batch * world)

    def validate(self, world: int = 1) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        _at_least(problems, self, 1, "epochs", "batch_size", "device_batch", "max_steps", "limit_batches")
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
    tensorboard: bool = setting(False, "Also log to TensorBoard (needs tensorboard).")
    command: str = setting("", cli=False)  # the command line, for the report
    dry_run: bool = setting(
        False,
        "Check every flag, resolve every setting (auto values included) and print them "
        "as YAML with the model's cost; write nothing, train nothing.",
    )

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        _at_least(problems, self, 1, "eval_every", "log_every", "save_every")
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
        return problems

    def validate(self) -> None:
        problems = self.problems()
        writable(problems, "--out", self.run.out, folder=True)  # the protocols check their own --out
        fail_if(problems)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
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


# ---------------------------------------------------------------- command configs
@dataclass
class EmbedConfig(Settings):
    classes: str = setting(
        required=True,
        help="Labels file (one name a line, or CSV id,name), a comma list "
        '"a,b,c", or a built-in list: k400, imagenet.',
    )
    out: str = setting(required=True, help="File to write (.pt).")
    backbone: str = borrow(ModelConfig, "backbone")
    pretrained: str | None = borrow(ModelConfig, "pretrained")
    templates: list[str] | None = borrow(ModelConfig, "templates", shown="'a video of a person {}.'")
    head: str = borrow(
        ModelConfig,
        "head",
        choices=("text", "random", "orthogonal"),
        help="Which matrix to write: text embeddings, or a random / orthogonal baseline.",
    )
    seed: int = borrow(OptimConfig, "seed", help="Seed of the random and orthogonal matrices.")
    plot: str | None = setting(
        None, "Also draw the inter-class correlation map to this PNG (needs matplotlib)."
    )
    text_encoder: str | None = borrow(ModelConfig, "text_encoder")
    class_names: str = borrow(ModelConfig, "class_names")

    def validate(self) -> None:
        problems = choice_problems(self, nested=False)
        if self.text_encoder and self.head != "text":
            problems.append("--text-encoder only makes --head text")
        if self.head not in ("text", "random", "orthogonal"):
            problems.append(
                f"--head {self.head!r}: tkvr embed writes text, random or orthogonal "
                "(lda is fitted from visual features by tkvr train --head lda)"
            )
        if self.templates is not None:
            problems += template_problems(self.templates)
        writable(problems, "--out", self.out)
        writable(problems, "--plot", self.plot)
        fail_if(problems)


@dataclass
class CheckSource(SourceConfig):
    data: str = borrow(SourceConfig, "data", default=dataclasses.MISSING, required=True)


@dataclass
class EvalSource(SourceConfig):
    data: str | None = borrow(SourceConfig, "data", default=None, shown="the checkpoint's")
    fold: int | None = borrow(SourceConfig, "fold", shown="the checkpoint's")


@dataclass
class CheckConfig(Settings):
    source: CheckSource = field(default_factory=CheckSource)
    split: str = setting("train", "Which split to scan.", choices=SPLITS)
    frames: int = borrow(ModelConfig, "frames", help="Frames read per video, as in training.")
    json: str | None = setting(None, "Write the report here as JSON (written whole or not at all).")

    def validate(self) -> None:
        problems = self.source.validate()
        _frames(problems, self)
        writable(problems, "--json", self.json)
        fail_if(problems)


@dataclass
class BackbonesConfig(Settings):
    json: str | None = borrow(CheckConfig, "json")

    def validate(self) -> None:
        problems: list[str] = []
        writable(problems, "--json", self.json)
        fail_if(problems)


@dataclass
class PrepareConfig(Settings):
    out: str = borrow(
        RunConfig,
        "out",
        default=dataclasses.MISSING,
        required=True,
        help="Folder of the prepared dataset (created; a rerun resumes it).",
    )
    source: CheckSource = field(default_factory=CheckSource)
    short_side: int = setting(320, "Short side of the re-encoded videos (aspect kept, never upscaled).")
    gop: int = setting(8, "A key frame every this many frames: any sampled frame is a short decode away.")
    crf: int = setting(23, "H.264 quality (0 lossless .. 51 worst; 23 is x264's default).")

    def validate(self) -> None:
        problems = self.source.validate()
        _at_least(problems, self, 16, "short_side")
        _at_least(problems, self, 1, "gop")
        if not 0 <= self.crf <= 51:
            problems.append(f"--crf must be in 0..51, got {self.crf}")
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)


@dataclass
class EvalConfig(Settings):
    checkpoint: str = setting(required=True, help="Run directory (its best, else last checkpoint) or a file.")
    source: EvalSource = field(default_factory=EvalSource)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    split: str = borrow(CheckConfig, "split", default="val", help="Split to score.")
    views: str = borrow(DataConfig, "views")
    test_scale: float | None = borrow(DataConfig, "test_scale", default=None, shown="the checkpoint's")
    view_average: str | None = borrow(DataConfig, "view_average", default=None, shown="the checkpoint's")
    labels: str | None = setting(None, "'data': embed the eval data's class names (zero-shot swap).")
    batch_size: int = setting(16, "Videos per device and batch.")
    json: str | None = borrow(CheckConfig, "json")
    per_class: str | None = setting(
        None,
        "Write per-class results here as CSV: class, samples, top-1 %, the class it is most often "
        "taken for and how often.",
    )
    plot: str | None = borrow(
        EmbedConfig,
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
        problems = self.source.validate() + self.device.validate()
        problems += eval_problems(self.views, self.test_scale, self.view_average)
        _at_least(problems, self, 1, "batch_size")
        if self.labels not in (None, "data"):
            problems.append(
                f"--labels {self.labels!r}: the only value is 'data' (embed the eval data's names); "
                "for other names use tkvr predict --labels"
            )
        _figure(problems, "--plot", self.plot)
        for flag, path in (("--json", self.json), ("--per-class", self.per_class)):
            writable(problems, flag, path)
        fail_if(problems)


@dataclass
class PredictConfig(Settings):
    files: list[str] = setting(cli=False, default=[])  # the command's arguments
    checkpoint: str | None = borrow(
        EvalConfig,
        "checkpoint",
        default=None,
        help="Run directory or checkpoint file. Without it, --backbone's pre-trained model scores "
        "--labels zero-shot.",
        required=False,
    )
    backbone: str | None = borrow(
        ModelConfig,
        "backbone",
        default=None,
        help="Zero-shot without a checkpoint: the pre-trained "
        "model (with TAP over frames and a frozen head of --labels' names).",
        shown="none",
    )
    pretrained: str | None = borrow(ModelConfig, "pretrained")
    frames: int | None = borrow(
        ModelConfig, "frames", default=None, shown="the checkpoint's; 8 with --backbone"
    )
    templates: list[str] | None = borrow(ModelConfig, "templates", shown="the checkpoint's; the model's own")
    labels: str | None = setting(None, 'Class names: "a,b,c" or a labels file (open vocabulary).')
    top_k: int = setting(5, "Labels per input (or window).")
    out: str | None = setting(
        None,
        "Write one row per input (per window with --window) here as it goes: .csv or .jsonl; "
        "with --window the segments go beside it (NAME.segments.csv or .jsonl).",
    )
    resume: bool = setting(False, "Continue an --out of a killed run: skip the inputs already in it.")
    window: float | None = setting(None, "Score long videos in windows of this many seconds.")
    stride: float | None = setting(
        None, "Seconds from one window's start to the next.", shown="half --window"
    )
    plot: str | None = borrow(
        EvalConfig,
        "plot",
        help="With --window: draw the top labels' scores over time and the segments here (.png, .svg or "
        ".pdf; needs matplotlib).",
    )
    views: str = borrow(
        DataConfig,
        "views",
        default="1x1",
        help="Views per input: C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3; their video "
        "embeddings are averaged, then scored.",
    )
    test_scale: float | None = borrow(
        DataConfig, "test_scale", default=None, shown="the checkpoint's; 256/224"
    )
    batch_size: int = borrow(EvalConfig, "batch_size", help="Inputs (or windows) per batch.")
    workers: int | None = borrow(SourceConfig, "workers")
    decoder: str = borrow(SourceConfig, "decoder")
    accelerator: str = borrow(DeviceConfig, "accelerator")
    precision: str = borrow(DeviceConfig, "precision")
    json: str | None = borrow(CheckConfig, "json")

    def validate(self) -> None:
        problems = choice_problems(self, nested=False)
        _at_least(problems, self, 1, "top_k", "batch_size")
        _frames(problems, self)
        _at_least(problems, self, 0, "workers")
        problems += eval_problems(self.views, self.test_scale, None)
        if self.window is not None and not self.views.startswith("1x"):
            problems.append(
                f"--views {self.views} with --window: the windows are the clips; give --views 1xS"
            )
        if not self.files:
            problems.append("give video or image files, folders or list files to predict")
        if not self.checkpoint and not self.backbone:
            problems.append("give --checkpoint RUN, or --backbone NAME with --labels for zero-shot")
        if self.checkpoint and self.backbone:
            problems.append(
                "--backbone scores without a checkpoint; give --checkpoint or --backbone, not both"
            )
        if self.backbone and not self.checkpoint and not self.labels:
            problems.append(
                f'--backbone {self.backbone} needs --labels: the class names to score ("a,b,c" or a file)'
            )
        for flag, v in (("--window", self.window), ("--stride", self.stride)):
            if v is not None and not v > 0:
                problems.append(f"{flag} {v}: give a positive number of seconds")
        least = max(0.01, (self.window or 0) / 100)  # windows a video are bounded: a list, a row each
        if self.window and self.stride and 0 < self.stride < least:
            problems.append(f"--stride {self.stride:g}: at least {least:g} s (1/100 of --window, and 0.01 s)")
        if self.window is None:
            for flag, v in (("--stride", self.stride), ("--plot", self.plot)):
                if v is not None:
                    problems.append(f"{flag} applies to windows of long videos: give --window SECONDS too")
        if self.out and Path(self.out).suffix.lower() not in (".csv", ".jsonl"):
            problems.append(f"--out {self.out}: end the name in .csv or .jsonl")
        if self.resume and not self.out:
            problems.append("--resume continues an --out file: give --out")
        if self.out and not self.resume and Path(self.out).is_file() and Path(self.out).stat().st_size:
            problems.append(
                f"--out {self.out} already holds results: add --resume to continue it, or give another --out"
            )
        _figure(problems, "--plot", self.plot)
        for flag, path in (("--json", self.json), ("--out", self.out)):
            writable(problems, flag, path)
        fail_if(problems)


@dataclass
class ExportConfig(Settings):
    checkpoint: str = borrow(EvalConfig, "checkpoint")
    out: str = setting(
        required=True,
        help="The file to write: .onnx (ONNX, checked with onnxruntime) or .pt2 (torch.export); its "
        "sidecar NAME.json (model.onnx.json) says how to feed it.",
    )
    labels: str | None = borrow(
        PredictConfig, "labels", help='Other class names for the head: "a,b,c" or a labels file.'
    )

    def validate(self) -> None:
        problems: list[str] = []
        if Path(self.out).suffix.lower() not in (".onnx", ".pt2"):
            problems.append(f"--out {self.out}: end the name in .onnx (ONNX) or .pt2 (torch.export)")
        writable(problems, "--out", self.out)
        writable(problems, "--out's sidecar", self.out + ".json")
        fail_if(problems)


@dataclass
class ConvertConfig(Settings):
    out: str = setting(
        required=True, help="Run directory to write: a tkvr run every command takes as --checkpoint."
    )
    file: str = setting(cli=False, default="")  # the command's argument: the released file
    labels: str | None = borrow(PredictConfig, "labels", help='Class names: "a,b,c" or a labels file.')
    data: str | None = borrow(
        SourceConfig, "data", default=None, help="Or a dataset whose class names to use."
    )
    data_root: str | None = borrow(SourceConfig, "data_root")
    fold: int | None = borrow(SourceConfig, "fold")
    embeddings: str | None = borrow(
        ModelConfig,
        "embeddings",
        help="The classifier: a tkvr embeddings file, or a plain [C, D] tensor (as the released test.py "
        "caches it) with --labels or --data for its names.",
        shown="the class names embedded by --backbone's text tower",
    )
    backbone: str | None = borrow(
        ModelConfig,
        "backbone",
        default=None,
        help="The pre-trained CLIP whose text tower embeds the class names; its visual encoder must be "
        "the file's.",
        shown="inferred from the file's shapes",
    )
    pretrained: str | None = borrow(ModelConfig, "pretrained")
    frames: int = borrow(
        ModelConfig, "frames", help="Frames T per clip the model reads (the file does not say)."
    )
    command: str = setting("", cli=False)  # the command line, recorded in config.yaml

    def validate(self) -> None:
        problems: list[str] = []
        if not self.file:
            problems.append("give the released model file: tkvr convert FILE.pt --out RUN")
        elif not Path(self.file).is_file():
            problems.append(f"{self.file}: no such file")
        if self.labels and self.data:
            problems.append("--labels and --data both name the classes: give one")
        _frames(problems, self)
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)


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
            problems.append(f"tkvr plot {self.figure!r}: choose correlation, fractions or loss")
        if not self.inputs:
            problems.append("give the runs (or, for correlation, an embeddings file) to draw from")
        elif self.figure == "correlation" and len(self.inputs) != 1:
            problems.append(f"tkvr plot correlation draws one head; {len(self.inputs)} inputs given")
        _figure(problems, "--out", self.out)
        fail_if(problems)


@dataclass
class FewshotConfig(Settings):
    train: TrainConfig = field(default_factory=TrainConfig)
    shots: str = setting(
        "1,3,5,all",
        "K values to sweep, comma-separated; 'all' is the full training split "
        "(the paper's Table 8: 1, 3, 5 and All).",
    )
    shot_schedule: str = setting(
        "released",
        "How long a K-shot run trains: released (the released few-shot (092ad0a) "
        "configs: the sample repeated to the length of the full training "
        "split, --epochs epochs) or paper (the paper's text: --shot-epochs "
        "passes over the sample itself).",
        choices=SHOT_SCHEDULES,
    )
    shot_epochs: int = setting(200, "--shot-schedule paper: passes over each K-shot sample (the paper: 200).")
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
    json: str | None = borrow(CheckConfig, "json")
    hidden: ClassVar[tuple] = ("out", "resume")  # of the train group: one run per K and seed, fresh

    def validate(self) -> None:
        problems = self.train.problems()
        try:
            parse_shots(self.shots)
        except TkvrError as e:
            problems.append(str(e))
        _at_least(problems, self, 1, "repeats", "epoch_size", "shot_epochs")
        problems += choice_problems(self, nested=False)
        writable(problems, "--out", self.out, folder=True)
        writable(problems, "--json", self.json)
        fail_if(problems)


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
        EvalConfig,
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
    json: str | None = borrow(CheckConfig, "json")
    hidden: ClassVar[tuple] = ("data", "out", "resume")

    def validate(self) -> None:
        problems = self.train.problems() + choice_problems(self, nested=False)
        writable(problems, "--out", self.out, folder=True)
        writable(problems, "--json", self.json)
        fail_if(problems)


@dataclass
class DemoConfig(Settings):
    out: str = borrow(RunConfig, "out", default="runs/demo", help="Where the demo's runs go.")
    epochs: int = borrow(OptimConfig, "epochs", default=3, help="Training epochs on the seen toy classes.")
    workers: int | None = borrow(SourceConfig, "workers")
    seed: int = borrow(OptimConfig, "seed")

    def validate(self) -> None:
        problems: list[str] = []
        _at_least(problems, self, 1, "epochs")
        _at_least(problems, self, 0, "workers")
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)
