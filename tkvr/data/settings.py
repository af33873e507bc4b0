"""The data group's settings (`--data`, `--decoder`, `--workers`, crops, views, ...): their
declarations, choices and checks. Torch-free; the readers and loaders beside it take a
`SourceConfig` / `DataConfig` and the few model values they need (frames, seed) by name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.settings import Settings, at_least, borrow, choice_problems, setting

DECODERS = ("auto", "torchcodec", "pyav")
CROPS = ("rrc", "multiscale")
RANDAUG = ("auto", "off", "frame", "clip")
VIEW_AVERAGE = ("features", "scores")
SPLITS = ("train", "val")
MAX_CLIPS = 32  # temporal clips per video; published protocols use up to 10 (4x3 in the paper)


def parse_views(spec: str) -> tuple[int, int]:
    """'4x3' -> (4 temporal clips, 3 spatial crops). S must be 1 or 3."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not m:
        raise TkvrError(f"--views {spec!r} must look like CxS, e.g. 1x1 or 4x3")
    c, s = int(m.group(1)), int(m.group(2))
    if not 1 <= c <= MAX_CLIPS:  # each clip is decoded and embedded: 100000 would exhaust memory
        raise TkvrError(f"--views {spec}: the number of temporal clips C must be 1 to {MAX_CLIPS}")
    if s not in (1, 3):
        raise TkvrError(f"--views {spec}: the number of spatial crops S must be 1 or 3")
    return c, s


def views_text(views: tuple[int, int]) -> str:
    """(4, 3) -> '4x3', as --views is typed and config.yaml records it."""
    return f"{views[0]}x{views[1]}"


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
        at_least(problems, self, 0, "workers")
        if self.decode_device.startswith("cuda"):
            import torch  # deferred: keeps tkvr --help fast

            if not torch.cuda.is_available():
                problems.append(f"--decode-device {self.decode_device}: no CUDA device here; use cpu")
        return problems


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
    views: tuple[int, int] = setting(
        "1x1",
        "Validation views C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3.",
        parse=parse_views,
        text=views_text,
    )
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
        problems += eval_problems(self.test_scale, self.view_average)
        return problems


def eval_problems(test_scale: float | None, view_average: str | None) -> list[str]:
    problems: list[str] = []
    if test_scale is not None and not 1 <= test_scale <= 4:
        problems.append(
            f"--test-scale must be in [1, 4] (1: resize the short side to the crop size), got {test_scale}"
        )
    if view_average is not None and view_average not in VIEW_AVERAGE:
        problems.append(f"--view-average {view_average!r}: choose features or scores")
    return problems


@dataclass
class CheckSource(SourceConfig):
    data: str | None = borrow(SourceConfig, "data", default=None, shown="none: FILES")


def stem_of(path: str) -> str:
    """The name `tkvr check --save-views` saves an input's views under: the file name without its
    extension (a frame folder: its name)."""
    p = Path(path.rstrip("/"))
    return p.name if p.is_dir() else p.stem


@dataclass
class EvalSource(SourceConfig):
    data: str | None = borrow(SourceConfig, "data", default=None, shown="the checkpoint's")
    fold: int | None = borrow(SourceConfig, "fold", shown="the checkpoint's")
