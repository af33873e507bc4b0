"""tkvr prepare: a dataset rewritten once into videos that train fast (resumable)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tkvr.base.fileio import writable
from tkvr.base.settings import Settings, at_least, borrow, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.data.settings import CheckSource
from tkvr.run.settings import RunConfig


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
        at_least(problems, self, 16, "short_side")
        at_least(problems, self, 1, "gop")
        if not 0 <= self.crf <= 51:
            problems.append(f"--crf must be in 0..51, got {self.crf}")
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)


def run(cfg: PrepareConfig) -> dict:
    from tkvr.run.prepare import prepare  # deferred: tkvr --help loads no torch

    return prepare(cfg.source, out=cfg.out, short_side=cfg.short_side, gop=cfg.gop, crf=cfg.crf)


COMMAND = Command(
    "prepare",
    PrepareConfig,
    run,
    """Rewrite a dataset once into a form that trains fast: videos re-encoded at a modest size with
    a key frame every few frames; a new dataset folder that --data takes. Resumable.

    \b
    Example:
      tkvr prepare --data k400 --data-root /data --out /data/k400_fast
      tkvr train --data /data/k400_fast
    """,
    readers=False,  # its --workers are encoders of its own pool
)
