"""Run a model written by `tkvr export --out model.onnx` without tkvr or torch: PyAV reads the
video, numpy and Pillow make the clip as the sidecar (model.onnx.json) describes, onnxruntime
scores it. The sidecar must describe this very model file (its sha256), else nothing is scored.

    pip install onnxruntime av pillow numpy
    python examples/run_exported.py model.onnx clip.mp4 [more.mp4 ...]
"""

import hashlib
import json
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image


def frames_of(path: str) -> list:
    """Every frame in display order, as tkvr counts them. Metadata that is not UTF-8 (some HMDB-51
    AVIs) is dropped, as tkvr does: the frames are what matter."""
    with av.open(path, metadata_errors="ignore") as f:
        return [fr.to_image() for fr in f.decode(video=0)]  # a short clip: every frame, in order


def clip(path: str, card: dict) -> np.ndarray:
    """float32 [T, 3, size, size]: frame floor((i + 0.5) * n / T) of each of T equal segments, the
    short side resized (the long side as torchvision computes it: floored), the centre crop (its
    offset rounded as torchvision's), normalised."""
    frames = frames_of(path)
    t, size, short, n = card["frames"], card["size"], card["resize_short_side"], len(frames)
    picked = [frames[min(n - 1, int((i + 0.5) * n / t))] for i in range(t)]
    out = []
    for img in picked:
        w, h = img.size
        if w <= h:
            new = (short, int(short * h / w))
        else:
            new = (int(short * w / h), short)
        img = img.resize(new, Image.BILINEAR)  # antialiased when it shrinks, as tkvr's resize
        left, top = int(round((img.width - size) / 2.0)), int(round((img.height - size) / 2.0))
        x = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0  # [H, W, 3]
        out.append(((x - card["mean"]) / card["std"]).transpose(2, 0, 1))  # [3, H, W]
    return np.stack(out).astype(np.float32)


def sidecar(model: str) -> dict:
    """The sidecar written with `model`; refused when it describes another file."""
    path = Path(model + ".json")
    if not path.is_file():
        sys.exit(f"{path}: no sidecar beside {model}; export it again with tkvr export")
    card = json.loads(path.read_text(encoding="utf-8"))
    h = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if card.get("model_sha256") != h.hexdigest():
        sys.exit(f"{path} describes another model than {model} (sha256 differs); export it again")
    return card


def main(model: str, videos: list[str]) -> None:
    import onnxruntime  # here, so that `clip` can be used (and tested) without it

    card = sidecar(model)
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    batch = np.stack([clip(v, card) for v in videos])  # [B, T, 3, H, W]
    logits = session.run(None, {"clips": batch})[0]  # [B, C]
    scores = np.exp(logits - logits.max(1, keepdims=True))
    scores /= scores.sum(1, keepdims=True)
    for v, s in zip(videos, scores):
        best = np.argsort(-s)[:5]
        print(v, " | ".join(f"{card['classes'][i]} {s[i]:.3f}" for i in best))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
