"""Class names x prompt templates -> normalised [C, D] class embeddings, and their file format.

An embeddings file is a `torch.save`d dict, loadable with `torch.load(..., weights_only=True)`:
  embeddings  float32 [C, D], rows L2-normalised
  classes     list[str], row order
  backbone    str, pretrained str | None, templates list[str], head str ('text', 'random', ...)
  text_encoder  str | None: `embed --text-encoder` (a text-only encoder), None for CLIP's own
  format      1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_save, checksum, safe_load
from tkvr.data.classes import DEFAULT_TEMPLATES, TEXT4VIS_TEMPLATES, prompt_name
from tkvr.model.heads import head_matrix


def run_templates(model_cfg, source_templates) -> list[str]:
    """The templates a run uses: --template, else the template mode's set, else the dataset's."""
    if model_cfg.templates:
        templates = list(model_cfg.templates)
    elif model_cfg.template_mode == "augment":
        templates = list(TEXT4VIS_TEMPLATES)
    else:
        templates = list(source_templates)
    if model_cfg.text_online and len(templates) != 1:
        raise TkvrError(
            f"--text-online trains the text encoder on one prompt per class; {len(templates)} "
            "templates given: give one --template"
        )
    if model_cfg.template_mode == "augment" and len(templates) < 2:
        raise TkvrError(
            "--template-mode augment draws one of several templates per step: give two or more "
            "--template (or none, for the 28 built-in templates of the released code at 238c07f)"
        )
    return templates


FORMAT = 1
KEYS = ("embeddings", "classes", "backbone", "pretrained", "templates", "head", "format")


def encode_classes(
    backbone,
    classes: list[str],
    templates: list[str],
    batch: int = 256,
    per_template: bool = False,
    names: str = "words",
):
    """[C, D] float32: per template the normalised text embedding, averaged, normalised again
    (or, `per_template`, each template's own [K, C, D]). Class ids are put into prompts in
    readable form (prompt_name, in the style `names`: --class-names)."""

    clip = backbone.clip
    out = []
    with torch.no_grad():
        for t in templates:
            rows = []
            for i in range(0, len(classes), batch):
                tokens = backbone.tokenizer([t.format(prompt_name(c, names)) for c in classes[i : i + batch]])
                rows.append(F.normalize(clip.encode_text(tokens).float(), dim=-1))
            out.append(torch.cat(rows))  # [C, D]
    out = torch.stack(out)  # [K, C, D]
    return out if per_template else F.normalize(out.mean(0), dim=-1)


# The map from a text-only encoder's width to the visual width is one fixed map for every command,
# so that names embedded at different times (a run's classes, new ones at eval) share one space.
PROJECTION_SEED = 0


def class_embeddings(
    backbone,
    classes: list[str],
    templates: list[str],
    text_encoder: str | None = None,
    per_template: bool = False,
    names: str = "words",
):
    """[C, D]: the class names embedded by CLIP's text tower, or by `text_encoder` (st:NAME);
    `per_template`: [K, C, D], one classifier per template (--template-mode augment); `names`:
    how a class id reads in the prompt (--class-names)."""
    if text_encoder:
        return encode_text_only(
            text_encoder, classes, templates, backbone.dim, per_template=per_template, names=names
        )
    return encode_classes(backbone, classes, templates, per_template=per_template, names=names)


def projection(d_in: int, d_out: int, seed: int = PROJECTION_SEED):
    """A fixed random map [d_in, d_out] with orthonormal rows (d_in <= d_out) or columns.

    With d_in <= d_out it is an isometry: inner products, hence the inter-class correlations,
    survive exactly. With d_in > d_out it is a random orthogonal projection, which keeps them
    approximately (Johnson-Lindenstrauss; error ~ 1/sqrt(d_out))."""

    g = torch.Generator().manual_seed(seed)
    if d_in <= d_out:
        q, _ = torch.linalg.qr(torch.randn(d_out, d_in, generator=g, dtype=torch.float64))  # [d_out, d_in]
        return q.T.float()  # [d_in, d_out], orthonormal rows
    q, _ = torch.linalg.qr(torch.randn(d_in, d_out, generator=g, dtype=torch.float64))  # [d_in, d_out]
    return (q * (d_in / d_out) ** 0.5).float()


def encode_text_only(
    spec: str,
    classes: list[str],
    templates: list[str],
    dim: int,
    seed: int = PROJECTION_SEED,
    per_template: bool = False,
    names: str = "words",
):
    """--text-encoder st:NAME_OR_PATH: a sentence-transformers model embeds the prompts; the
    [C, d] result (or [K, C, d], `per_template`) is mapped to the visual width D by `projection`
    and L2-normalised."""

    if not spec.startswith("st:"):
        raise TkvrError(f"--text-encoder {spec!r}: use st:NAME_OR_PATH (a sentence-transformers model)")
    try:
        from sentence_transformers import SentenceTransformer  # deferred: an optional extra ([text])
    except ImportError:
        raise TkvrError("--text-encoder needs sentence-transformers: pip install 'tkvr[text]'") from None
    name = spec[3:]
    try:
        model = SentenceTransformer(name, device="cpu")
    except Exception as e:  # noqa: BLE001 - hub, file and format errors all mean 'cannot load it'
        raise TkvrError(
            f"--text-encoder {spec}: cannot load it ({type(e).__name__}); give a local folder "
            "or a cached model name"
        ) from None
    rows = []
    for t in templates:
        emb = model.encode(
            [t.format(prompt_name(c, names)) for c in classes],
            convert_to_tensor=True,
            normalize_embeddings=True,
        )
        rows.append(emb.float().cpu())  # [C, d]
    emb = torch.stack(rows) if per_template else F.normalize(torch.stack(rows).mean(0), dim=-1)
    if emb.shape[-1] != dim:
        emb = emb @ projection(emb.shape[-1], dim, seed)  # [..., C, D]
    return F.normalize(emb, dim=-1)


@dataclass(frozen=True)
class Made:
    """What made an embeddings file, recorded in it: the --backbone and --pretrained whose text
    tower embedded the names, the templates, the head (text, random, orthogonal, lda) and the
    text-only encoder (`embed --text-encoder`; None: CLIP's own text tower)."""

    backbone: str
    pretrained: str | None = None
    templates: tuple[str, ...] = ()
    head: str = "text"
    text_encoder: str | None = None


def embed(
    classes: list[str], backbone, made: Made, *, out: str, seed: int = 0, class_names: str = "words"
) -> dict:
    """The work of `tkvr embed`: class names x templates -> [C, D] (or a random / orthogonal
    head), saved to `out` with what `made` it (its backbone and pretrained: those that built
    `backbone`; no templates: the default one). -> {embeddings, classes, templates}."""

    templates = list(made.templates or DEFAULT_TEMPLATES)
    if made.head == "text":
        emb = class_embeddings(backbone, classes, templates, made.text_encoder, names=class_names)
    else:
        emb = head_matrix(made.head, len(classes), backbone.dim, seed)
    save_embeddings(out, emb, classes, Made(made.backbone, made.pretrained, tuple(templates), made.head,
                                            made.text_encoder))
    return {"embeddings": emb, "classes": classes, "templates": templates}


def save_embeddings(path, embeddings, classes, made: Made):
    """[C, D] rows, one per class, with what made them (files written before the text encoder
    was recorded simply lack its key)."""

    if embeddings.shape[0] != len(classes):
        raise ValueError("one row per class")
    data = {
        "embeddings": embeddings.detach().float().cpu().contiguous(),
        "classes": list(classes),
        "backbone": made.backbone,
        "pretrained": made.pretrained,
        "templates": list(made.templates),
        "head": made.head,
        "text_encoder": made.text_encoder,
        "format": FORMAT,
    }
    atomic_save({**data, "checksum": checksum(data)}, path)


def load_embeddings(
    path, classes: list[str] | None = None, dim: int | None = None, flag: str = "--embeddings"
) -> dict:
    """Load and check an embeddings file against the classes and width it will be used with."""
    data = safe_load(path, f"{flag} file")
    if not isinstance(data, dict) or any(k not in data for k in KEYS):
        raise TkvrError(f"{flag} {path} is not a tkvr embeddings file (make one with tkvr embed)")
    emb = data["embeddings"]
    if "checksum" in data and data["checksum"] != checksum(data):  # the digest leaves out its own key
        raise TkvrError(
            f"{flag} {path}: its contents (embeddings, class names) do not match the checksum written "
            "with them (changed or damaged on disk); run tkvr embed again"
        )  # files written before checksums have none: their shape and values are still checked
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] != len(data["classes"]):
        raise TkvrError(f"{flag} {path}: 'embeddings' must be a [C, D] matrix with one row per class")
    if not torch.isfinite(emb).all():
        bad = int((~torch.isfinite(emb)).any(1).nonzero()[0])
        raise TkvrError(
            f"{flag} {path}: row {bad} ({data['classes'][bad]!r}) holds NaN or infinite values; "
            "run tkvr embed again"
        )
    if dim is not None and emb.shape[1] != dim:
        raise TkvrError(
            f"{flag} {path} has width D={emb.shape[1]} but the model's is {dim} "
            f"(made for backbone {data['backbone']}); re-run tkvr embed with this backbone"
        )
    if classes is not None and list(data["classes"]) != list(classes):
        if len(data["classes"]) != len(classes):
            why = f"{len(data['classes'])} classes, the data has {len(classes)}"
        elif set(data["classes"]) == set(classes):
            why = "the same classes in another order"
        else:
            diff = sorted(set(classes) - set(data["classes"]))[:3]
            why = f"classes differ (e.g. {diff} missing)"
        raise TkvrError(
            f"{flag} {path} does not match the data: {why}; re-run tkvr embed with the dataset's labels file"
        )
    return data
