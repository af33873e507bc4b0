"""tkvr convert: a released Text4Vis model file -> a tkvr run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tkvr.base.fileio import writable
from tkvr.base.settings import Settings, borrow, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.data.settings import SourceConfig
from tkvr.model.settings import ModelConfig, frames_problems
from tkvr.run.settings import Shared


@dataclass
class ConvertConfig(Settings):
    out: str = setting(
        required=True, help="Run directory to write: a tkvr run every command takes as --checkpoint."
    )
    file: str = setting(cli=False, default="")  # the command's argument: the released file
    labels: str | None = borrow(Shared, "labels", help='Class names: "a,b,c" or a labels file.')
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
        elif Path(self.file).is_dir():
            problems.append(
                f"{self.file}: a folder; give the released model file in it "
                f"(e.g. {self.file}/k400-vitb-16-f8.pt)"
            )
        elif not Path(self.file).is_file():
            problems.append(f"{self.file}: no such file")
        if self.labels and self.data:
            problems.append("--labels and --data both name the classes: give one")
        frames_problems(problems, self)
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)


def run(cfg: ConvertConfig) -> dict:
    from tkvr.run.convert import convert  # deferred: tkvr --help loads no torch

    return convert(cfg)


COMMAND = Command(
    "convert",
    ConvertConfig,
    run,
    """Turn a released Text4Vis model file (the authors' model zoo) into a tkvr run that eval,
    predict, zeroshot, export and train --init take.

    \b
    Example:
      tkvr convert k400-vitb-16-f8.pt --data k400 --data-root /data --out runs/k400-b16
      tkvr eval --checkpoint runs/k400-b16 --views 4x3
    """,
    arguments=(("file", {"required": False, "default": "", "help": "The released .pt file."}),),
)
