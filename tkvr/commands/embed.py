"""tkvr embed: class names -> the frozen classifier [C, D], written to --out."""

from __future__ import annotations

from dataclasses import dataclass

from tkvr.base.fileio import writable
from tkvr.base.progress import count, wrote
from tkvr.base.settings import Settings, borrow, choice_problems, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.model.settings import ModelConfig, template_problems
from tkvr.run.settings import OptimConfig, Shared


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
    plot: str | None = borrow(Shared, "plot")
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


def run(cfg: EmbedConfig) -> dict:
    from tkvr.run.embedding import embed_classes  # deferred: tkvr --help loads no torch

    return embed_classes(cfg)


def show(res: dict, cfg: EmbedConfig) -> None:
    emb = res["embeddings"]
    wrote(
        cfg.out,
        f"{cfg.head} embeddings [{emb.shape[0]}, {emb.shape[1]}] for "
        f"{count(len(res['classes']), 'class')}, backbone {cfg.backbone}, "
        f"{count(len(res['templates']), 'template')}"
        + (f", text encoder {cfg.text_encoder}" if cfg.text_encoder else ""),
    )
    if cfg.plot:
        wrote(cfg.plot, "inter-class correlation map")


COMMAND = Command(
    "embed",
    EmbedConfig,
    run,
    """Compute the class-embedding matrix [C, D] that serves as the frozen classifier.

    \b
    Example:
      tkvr embed --classes labels.txt --backbone ViT-B/16 --out k400_vitb16.pt --plot corr.png
    """,
    show=show,
)
