"""tkvr predict: top-k labels for video or image files, optionally over new class names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tkvr.errors import TkvrError
from tkvr.progress import console


@dataclass
class PredictConfig:
    files: list[str]
    checkpoint: str
    top_k: int = 5
    labels: str | None = None
    decoder: str = "auto"
    json: str | None = None


def run(cfg: PredictConfig) -> list[dict]:
    import torch

    from tkvr.commands.eval import load_model
    from tkvr.data.loader import read_clip
    from tkvr.data.specs import Sample
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import UnreadableVideo, pick_decoder
    from tkvr.engine import read_checkpoint
    from tkvr.model import preprocess_of
    from tkvr.text import resolve_classes

    if not cfg.files:
        raise TkvrError("give one or more video or image files to predict")
    missing = [f for f in cfg.files if not Path(f).exists()]
    if missing:
        raise TkvrError(f"{missing[0]}: no such file")
    if cfg.top_k < 1:
        raise TkvrError(f"--top-k must be >= 1, got {cfg.top_k}")
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
        results.append({"file": f, "labels": [classes[i] for i in top.indices.tolist()],
                        "scores": [round(float(s), 6) for s in top.values]})
    con = console()
    for r in results:
        if "error" in r:
            con.print(f"{r['file']}: unreadable ({r['error']})")
            continue
        con.print(f"{r['file']}")
        for lab, s in zip(r["labels"], r["scores"]):
            con.print(f"  {s:6.3f}  {lab}")
    if cfg.json:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json).write_text(json.dumps(results, indent=1))
    return results
