"""tkvr embed: class names x templates -> the frozen classifier matrix, written to one file."""

from __future__ import annotations

from tkvr.config import EmbedConfig
from tkvr.progress import say


def run(cfg: EmbedConfig) -> dict:
    from tkvr.heads import head_matrix
    from tkvr.model import build_backbone
    from tkvr.text import check_templates, encode_classes, plot_correlation, resolve_classes, save_embeddings

    classes = resolve_classes(cfg.classes)
    templates = check_templates(cfg.templates)
    backbone = build_backbone(cfg.backbone, cfg.pretrained)
    if cfg.text_encoder:
        from tkvr.text import encode_text_only

        emb = encode_text_only(cfg.text_encoder, classes, templates, backbone.dim, cfg.seed)
    elif cfg.head == "text":
        emb = encode_classes(backbone, classes, templates)
    else:
        emb = head_matrix(cfg.head, len(classes), backbone.dim, cfg.seed)
    save_embeddings(cfg.out, emb, classes, cfg.backbone, cfg.pretrained, templates, cfg.head)
    say(f"wrote {cfg.out}: {cfg.head} embeddings [{emb.shape[0]}, {emb.shape[1]}] for "
        f"{len(classes)} classes, backbone {cfg.backbone}, {len(templates)} template(s)"
        + (f", text encoder {cfg.text_encoder}" if cfg.text_encoder else ""))
    if cfg.plot:
        plot_correlation(emb, classes, cfg.plot, title=f"{cfg.head} embeddings, {cfg.backbone}")
        say(f"wrote {cfg.plot}: inter-class correlation map")
    return {"embeddings": emb, "classes": classes}
