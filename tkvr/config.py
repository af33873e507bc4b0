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

    def validate(self) -> list[str]:
        problems = []
        if self.head not in ("text", "random", "orthogonal"):
            problems.append(f"--head {self.head!r}: tkvr embed writes text, random or orthogonal "
                            "(lda is fitted from visual features by tkvr train --head lda)")
        if not self.out:
            problems.append("--out is required: the file to write")
        return problems
