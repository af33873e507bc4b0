"""Run a model written by `tkvr export --out model.onnx` without tkvr or torch: PyAV reads the
video, numpy and Pillow make the clip as the sidecar (model.json) describes, onnxruntime scores it.

    pip install onnxruntime av pillow numpy
    python examples/run_exported.py model.onnx clip.mp4 [more.mp4 ...]
"""

import json
import sys
from pathlib import Path

import av
import numpy as np
import onnxruntime
from PIL import Image


def clip(path: str, card: dict) -> np.ndarray:
    """float32 [T, 3, size, size]: the middle frame of each of T equal segments, short side
    resized, centre crop, normalised."""
    with av.open(path) as f:
        frames = [fr.to_image() for fr in f.decode(video=0)]  # a short clip: every frame, in order
    t, size, short = card["frames"], card["size"], card["resize_short_side"]
    picked = [frames[min(len(frames) - 1, int((i + 0.5) * len(frames) / t))] for i in range(t)]
    out = []
    for img in picked:
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        x = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0  # [H, W, 3]
        out.append(((x - card["mean"]) / card["std"]).transpose(2, 0, 1))  # [3, H, W]
    return np.stack(out).astype(np.float32)


def main(model: str, videos: list[str]) -> None:
    card = json.loads(Path(model).with_suffix(".json").read_text())
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
