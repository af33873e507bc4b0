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


def frames_of(path: str) -> tuple[list, int]:
    """(every frame in display order, the frame count tkvr samples from). tkvr counts a video's
    frames by its packets, so a DivX AVI's placeholder packet (it decodes to no frame) counts,
    and an index past the last decoded frame is the last frame. Metadata that is not UTF-8 (some
    HMDB-51 AVIs) is dropped, as tkvr does: the frames are what matter."""
    with av.open(path, metadata_errors="ignore") as f:
        stream = f.streams.video[0]
        listed = sum(1 for p in f.demux(stream) if p.pts is not None and p.size > 0)
        f.seek(0)
        frames = [fr.to_image() for fr in f.decode(stream)]  # a short clip: every frame, in order
    return frames, max(listed, len(frames))


def clip(path: str, card: dict) -> np.ndarray:
    """float32 [T, 3, size, size]: frame int(i * n / T), the first of each of T equal segments
    (tkvr's test protocol, the authors' released one), the short side resized bicubic (the long
    side as torchvision computes it: floored), the centre crop (its offset rounded as
    torchvision's), normalised."""
    frames, n = frames_of(path)
    t, size, short = card["frames"], card["size"], card["resize_short_side"]
    picked = [frames[min(len(frames) - 1, int(i * n / t))] for i in range(t)]
    out = []
    for img in picked:
        w, h = img.size
        if w <= h:
            new = (short, int(short * h / w))
        else:
            new = (int(short * w / h), short)
        img = img.resize(new, Image.BICUBIC)  # as tkvr's eval resize (the released GroupScale)
        left, top = int(round((img.width - size) / 2.0)), int(round((img.height - size) / 2.0))
        x = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0  # [H, W, 3]
        out.append(((x - card["mean"]) / card["std"]).transpose(2, 0, 1))  # [3, H, W]
    return np.stack(out).astype(np.float32)


def fits(card) -> bool:
    """The fields `clip` and `main` use, of the types tkvr writes."""
    def whole(x):
        return isinstance(x, int) and not isinstance(x, bool) and x > 0

    def three(x):
        return isinstance(x, list) and len(x) == 3 and all(isinstance(v, (int, float)) for v in x)

    return (
        isinstance(card, dict)
        and isinstance(card.get("classes"), list)
        and all(isinstance(c, str) for c in card["classes"])
        and all(whole(card.get(k)) for k in ("frames", "size", "resize_short_side"))
        and three(card.get("mean"))
        and three(card.get("std"))
        and all(v != 0 for v in card["std"])
    )


def sidecar(model: str) -> dict:
    """The sidecar written with `model`; refused when it describes another file."""
    path = Path(model + ".json")
    if not path.is_file():
        sys.exit(f"{path}: no sidecar beside {model}; export it again with tkvr export")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # cut, edited, not UTF-8
        sys.exit(f"{path}: not a sidecar tkvr wrote ({type(e).__name__}); export it again")
    if not fits(card):
        sys.exit(f"{path}: its fields are not those tkvr writes (classes, frames, size, mean, std); export it again")
    h = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if card.get("model_sha256") != h.hexdigest():
        sys.exit(f"{path} describes another model than {model} (sha256 differs); export it again")
    # the fields that decide the labels and the input, as tkvr.run.export.card_digest hashes them
    fields = {k: card.get(k) for k in ("classes", "frames", "size", "mean", "std", "resize_short_side", "model_sha256")}
    if card.get("card_sha256") != hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest():
        sys.exit(f"{path}: its classes, sizes or normalisation were changed after export (card_sha256 differs); "
                 "export it again")
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
