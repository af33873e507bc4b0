"""`tkvr convert`: a released Text4Vis model file -> an ordinary tkvr run (config.yaml and
checkpoints/last.pt) that eval, predict, zeroshot, export and `train --init` take as they take any
run.

The architecture comes from the file's shapes (tkvr.model.released.layout); `--backbone` only
says which pre-trained CLIP's text tower embeds the class names, and must have the same visual
architecture. The classifier is `--embeddings` (a tkvr embeddings file, or a plain [C, D] tensor
as the released test.py caches it, then with the names of --labels or --data), or the class
names embedded by that text tower with the released prompt (`a video of a person {}.`) and the
names as the released lists spell them (`--class-names released`), as test.py at 238c07f does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_save, safe_load
from tkvr.base.progress import wrote
from tkvr.data.classes import DEFAULT_TEMPLATES, resolve_classes
from tkvr.data.specs import absolute, resolve
from tkvr.model.backbones import BUILTIN, OPENAI_NAMES, build_backbone, model_config, open_clip_models
from tkvr.model.released import describe, differences, layout, matches, released_state, to_tkvr
from tkvr.model.text import class_embeddings, load_embeddings
from tkvr.run.checkpoint import FORMAT, HEAD_FORM, run_model, sealed
from tkvr.run.settings import TrainConfig
from tkvr.run.training import write_config


def backbone_for(lay, asked: str | None, path: str) -> str:
    """The --backbone whose visual architecture is the file's: the one asked for (checked), else
    the first OpenAI CLIP or built-in that fits."""
    names = [asked] if asked else [*OPENAI_NAMES, *BUILTIN]
    for name in names:
        if fits(name, lay):
            return name
    if asked:
        raise TkvrError(
            f"--backbone {asked} does not have the visual encoder of {path} ({describe(lay)}); give the "
            "CLIP it was fine-tuned from, or leave --backbone out to infer it"
        )
    known = {*OPENAI_NAMES.values(), *BUILTIN.values()}
    oc = sorted((n for n in open_clip_models() if n not in known and fits(n, lay)), key=len)  # plain first
    if oc:  # open_clip knows the architecture, without OpenAI's weights for its text tower
        raise TkvrError(
            f"{path}: no OpenAI CLIP or built-in backbone has its visual encoder ({describe(lay)}); "
            f"open_clip's {', '.join(oc[:3])} {'has' if len(oc) == 1 else 'have'} it: name the one it was "
            "fine-tuned from with --backbone, with --pretrained for its text tower or --embeddings"
        )
    diffs = {n: differences(model_config(n)["vision_cfg"], model_config(n)["embed_dim"], lay) for n in names}
    near = min(diffs, key=lambda n: (diffs[n][0].startswith("kind"), len(diffs[n])))  # a ViT for a ViT
    raise TkvrError(
        f"{path}: neither tkvr nor open_clip knows a CLIP with its visual encoder ({describe(lay)}; the "
        f"nearest, {near}, differs in {', '.join(diffs[near])}); tkvr builds a converted model from a known "
        "CLIP's config, so it cannot convert this file"
    )


def fits(name: str, lay) -> bool:
    cfg = model_config(name)
    return bool(cfg) and matches(cfg["vision_cfg"], cfg["embed_dim"], lay)


def class_names(cfg, saved: dict | None) -> list[str]:
    if cfg.labels:
        return resolve_classes(cfg.labels, "--labels")
    if cfg.data:
        return resolve(cfg.data, cfg.data_root, cfg.fold or 1).classes
    if saved is not None and saved.get("classes"):
        return list(saved["classes"])
    raise TkvrError(
        "give the class names: --labels NAMES, --data DATASET, or --embeddings FILE of tkvr embed"
    )


def classifier(cfg, run: TrainConfig, dim: int) -> tuple[list[str], torch.Tensor]:
    """(class names, [C, D] normalised classifier) from --embeddings, or embedded now."""
    saved = None
    if cfg.embeddings:
        raw = safe_load(cfg.embeddings, "--embeddings")
        if isinstance(raw, torch.Tensor):  # the released test.py's cache: a bare [C, D] tensor
            emb = raw
        else:
            saved = load_embeddings(cfg.embeddings)
            emb = saved["embeddings"]
        names = class_names(cfg, saved)
        if emb.ndim != 2 or emb.shape != (len(names), dim):
            raise TkvrError(
                f"--embeddings {cfg.embeddings}: a [{len(names)}, {dim}] matrix is needed for "
                f"{len(names)} classes and this model, got {list(emb.shape)}"
            )
        return names, F.normalize(emb.float(), dim=-1)
    names = class_names(cfg, None)
    text = build_backbone(run.model.backbone, run.model.pretrained)  # the pre-trained text tower
    emb = class_embeddings(text, names, run.model.templates, names=run.model.class_names)
    return names, emb


def convert(cfg) -> dict:
    """Read, check, build, load, write; nothing is written before everything has been checked."""
    path, out = cfg.file, Path(cfg.out)
    if (out / "checkpoints" / "last.pt").exists() or (out / "checkpoints" / "best.pt").exists():
        raise TkvrError(f"--out {out} already holds a run; choose another --out")
    state = released_state(safe_load(path, "released model file"), path)
    lay = layout(state, path)
    if lay.positions and cfg.frames > lay.positions:
        raise TkvrError(
            f"--frames {cfg.frames}: the temporal transformer of {path} has {lay.positions} frame "
            f"positions, so it reads at most {lay.positions} frames; give --frames {lay.positions} or fewer"
        )
    run = TrainConfig()
    m = run.model
    m.backbone, m.pretrained, m.frames = backbone_for(lay, cfg.backbone, path), cfg.pretrained, cfg.frames
    m.temporal, m.class_names, m.templates = lay.temporal, "released", list(DEFAULT_TEMPLATES)
    if lay.temporal == "t-trans":
        m.t_trans_form, m.temporal_layers = "clip", lay.fusion_layers
    if lay.temporal == "token-t1d":
        every = lay.t1d_blocks == list(range(lay.layers))
        m.t1d_form, m.t1d_blocks = "released", None if every else lay.t1d_blocks
    run.data.test_scale = 256 / 224 if lay.image_size == 224 else 1.0  # test.py at 238c07f
    run.run.out, run.run.command = cfg.out, cfg.command
    # the dataset its classes came from, where one was named: eval then scores it without --data
    run.data.data = absolute(cfg.data) if cfg.data else None
    run.data.data_root = os.path.abspath(cfg.data_root) if cfg.data_root else None
    run.data.fold = cfg.fold or 1
    names, emb = classifier(cfg, run, lay.embed_dim)
    _, model = run_model(run, names, m.templates, weights=False, embeddings=emb)
    got = to_tkvr(state, lay)
    own = model.state_dict()
    wrong = [k for k in got if k in own and got[k].shape != own[k].shape]
    if wrong:  # load_state_dict would raise a many-line traceback
        k = wrong[0]
        raise TkvrError(
            f"{path} does not fit {m.backbone} with {lay.temporal}: weight {k!r} is "
            f"{list(got[k].shape)} in the file, {list(own[k].shape)} in the model built for it"
        )
    missing, unexpected = model.load_state_dict(got, strict=False)
    missing = [k for k in missing if k != "head.weight"]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise TkvrError(
            f"{path} does not fit {m.backbone} with {lay.temporal} ({'missing' if missing else 'unexpected'} "
            f"weight {first!r}): not the released layout"
        )
    ckpt = {
        "model": model.state_dict(),
        "config": run.to_dict(),
        "classes": names,
        "format": FORMAT,
        "head_form": HEAD_FORM,
        "epoch": 0,
        "step": 0,
        "best_top1": None,
        "converted_from": {"file": os.path.abspath(path), "layout": describe(lay), "temporal": lay.temporal},
    }
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_config(run, out)
    atomic_save(sealed(ckpt), out / "checkpoints" / "last.pt")
    wrote(out, f"{m.backbone} ({describe(lay)}), {lay.temporal}, {len(names)} classes, from {path}")
    return {"out": str(out), "backbone": m.backbone, "temporal": lay.temporal, "classes": len(names)}
