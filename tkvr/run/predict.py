"""Top-k labels for video or image files from a trained run, optionally over new class names
(`tkvr predict`)."""

from __future__ import annotations

from pathlib import Path

import torch

from tkvr.base.config import PredictConfig
from tkvr.base.errors import TkvrError
from tkvr.data.classes import resolve_classes
from tkvr.data.loader import read_clip
from tkvr.data.specs import Sample
from tkvr.data.transforms import EvalTransform
from tkvr.data.video import UnreadableVideo, pick_decoder, why_missing
from tkvr.model.video_model import preprocess_of
from tkvr.run.checkpoint import load_model, read_checkpoint


def predict(cfg: PredictConfig) -> list[dict]:
    """Top-k labels and scores per file; a file that does not read gets its error instead."""
    missing = [f for f in cfg.files if not Path(f).exists()]
    if missing:
        raise TkvrError(f"{missing[0]}: {why_missing(missing[0])}")
    folders = [f for f in cfg.files if Path(f).is_dir()]
    if folders:
        raise TkvrError(f"{folders[0]} is a folder; give video or image files (e.g. {folders[0]}/*.mp4)")
    ckpt = read_checkpoint(cfg.checkpoint)
    classes = resolve_classes(cfg.labels, "--labels") if cfg.labels else ckpt["classes"]
    tcfg, _, model = load_model(ckpt, classes)
    tf = EvalTransform(preprocess_of(model), 1)
    decoder = pick_decoder(cfg.decoder, quiet=True)
    k = min(cfg.top_k, len(classes))
    results = []
    for f in cfg.files:
        try:
            x = read_clip(Sample(f, -1), tcfg.model.frames, train=False, decoder=decoder)[0]  # [T, 3, H, W]
        except (UnreadableVideo, FileNotFoundError) as e:
            results.append({"file": f, "error": str(e), "labels": [], "scores": []})
            continue
        with torch.no_grad():
            p = model(tf(x)).softmax(-1)[0]  # [C]
        top = p.topk(k)
        results.append(
            {
                "file": f,
                "labels": [classes[i] for i in top.indices.tolist()],
                "scores": [round(float(s), 6) for s in top.values],
            }
        )
    return results
