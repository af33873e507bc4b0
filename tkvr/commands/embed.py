"""tkvr embed: class names x templates -> the frozen classifier matrix, written to one file."""

from __future__ import annotations

from tkvr.config import EmbedConfig
from tkvr.progress import count, say


def run(cfg: EmbedConfig) -> dict:
    from tkvr.model import build_backbone
    from tkvr.text import embed, resolve_classes

    cfg.validate()
    classes = resolve_classes(cfg.classes)
    res = embed(cfg, classes, build_backbone(cfg.backbone, cfg.pretrained))
    emb = res["embeddings"]
    say(
        f"wrote {cfg.out}: {cfg.head} embeddings [{emb.shape[0]}, {emb.shape[1]}] for "
        f"{count(len(res['classes']), 'class')}, backbone {cfg.backbone}, "
        f"{count(len(res['templates']), 'template')}"
        + (f", text encoder {cfg.text_encoder}" if cfg.text_encoder else "")
    )
    if cfg.plot:
        from tkvr.plots import plot_correlation

        plot_correlation(emb, res["classes"], cfg.plot, title=f"{cfg.head} embeddings, {cfg.backbone}")
        say(f"wrote {cfg.plot}: inter-class correlation map")
    return res
