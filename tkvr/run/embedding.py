"""`tkvr embed`: a class list -> the frozen classifier matrix in one file, and its inter-class
correlation map (--plot, the paper's Figure 1)."""

from __future__ import annotations

from tkvr.data.classes import resolve_classes
from tkvr.model.backbones import build_backbone
from tkvr.model.heads import orthogonal_matrix
from tkvr.model.text import Made, embed
from tkvr.run.plots import plot_correlation


def embed_classes(cfg) -> dict:
    """`tkvr embed` from its settings (tkvr.commands.embed.EmbedConfig).
    -> {embeddings [C, D], classes, templates}; the file is cfg.out, the map cfg.plot."""
    classes = resolve_classes(cfg.classes)
    if cfg.head == "orthogonal":  # the width, from the architecture alone: refused before any weights load
        orthogonal_matrix(len(classes), build_backbone(cfg.backbone, meta=True).dim)
    made = Made(cfg.backbone, cfg.pretrained, tuple(cfg.templates or ()), cfg.head, cfg.text_encoder)
    backbone = build_backbone(cfg.backbone, cfg.pretrained)
    res = embed(classes, backbone, made, out=cfg.out, seed=cfg.seed, class_names=cfg.class_names)
    if cfg.plot:
        title = f"{cfg.head} embeddings, {cfg.backbone}"
        plot_correlation(res["embeddings"], res["classes"], cfg.plot, title=title)
    return res
