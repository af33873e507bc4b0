"""A trained run as a file another program runs without tkvr (`tkvr export`): ONNX or a
torch.export program (.pt2) of the visual encoder, temporal module and frozen head, taking
normalised clips [B, T, 3, H, W] (any B) and returning logits [B, C]; a JSON sidecar (NAME.json
beside it: model.onnx.json) says how to make those clips, what the columns are, and which model
file it describes (its sha256, which the runner checks).

Export checks itself: the exported file, loaded back (onnxruntime for ONNX, torch.export.load
for .pt2), must give tkvr's logits on a sample batch within TOLERANCE, else nothing is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import torch

from tkvr.base.errors import Fault, TkvrError
from tkvr.base.fileio import atomic_path, atomic_write_text, hold
from tkvr.base.progress import status, wrote
from tkvr.data.classes import resolve_classes
from tkvr.data.transforms import input_size, short_side
from tkvr.model.video_model import preprocess_of, unwrap
from tkvr.run.checkpoint import load_model, read_checkpoint, weights_note

TOLERANCE = 1e-3  # max |exported - tkvr| over the sample's logits, relative to max(1, max |logit|)
ONNX_NEEDS = ("onnx", "onnxscript", "onnxruntime")


def sidecar_path(out: str | Path) -> Path:
    """model.onnx -> model.onnx.json: two exports (model.onnx, model.pt2) never share one."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def digest(path: str | Path) -> str:
    """sha256 of a file: the sidecar names the model it describes, the runner checks it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(cfg) -> dict:
    with hold(cfg.out, "--out", "export"):
        return _export(cfg)


def _export(cfg) -> dict:
    onnx = Path(cfg.out).suffix.lower() == ".onnx"
    missing = [m for m in ONNX_NEEDS if importlib.util.find_spec(m) is None] if onnx else []
    if missing:
        raise TkvrError(
            f"--out {cfg.out}: ONNX export needs {', '.join(missing)}: pip install 'tkvr[export]' "
            "(or export to .pt2, which needs nothing more)"
        )
    ckpt = read_checkpoint(cfg.checkpoint)
    classes = resolve_classes(cfg.labels, "--labels") if cfg.labels else ckpt["classes"]
    tcfg, _, model = load_model(ckpt, classes)
    model = unwrap(model).float().eval()
    pre = preprocess_of(model)
    size = input_size(pre)
    frames = tcfg.model.frames
    x = torch.randn(2, frames, 3, size, size, generator=torch.Generator().manual_seed(0))  # [B, T, 3, H, W]
    with torch.no_grad():
        want = model(x)  # [B, C]
    out = Path(cfg.out)
    room(out, model)
    # The model and its sidecar are written to temporary names first (a full disk stops here,
    # nothing replaced); then the old sidecar goes, the model and the new sidecar are renamed in.
    # A kill between the renames leaves a model without a sidecar, never one beside another's.
    with atomic_path(out, suffix=out.suffix) as tmp:  # the exporters pick the format by the suffix
        with status(f"exporting to {out.suffix[1:]} and checking it"):
            got = _onnx(model, x, tmp) if onnx else _pt2(model, x, tmp)
        diff = float((got - want).abs().max())
        bound = TOLERANCE * max(1.0, float(want.abs().max()))
        if not diff <= bound:
            raise TkvrError(
                f"--out {cfg.out}: the exported model's logits differ from tkvr's by {diff:.3g} "
                f"(more than {bound:.3g}); nothing written"
            )
        card = {
            **_card(onnx, classes, pre, frames, tcfg.data.test_scale),
            "checked": {"max_difference": diff, "tolerance": bound, "batch": list(x.shape)},
            "checkpoint": ckpt["path"],
            "weights": weights_note(ckpt["path"]),
            "model_file": out.name,
            "model_sha256": digest(tmp),
        }
        card["card_sha256"] = card_digest(card)
        side = sidecar_path(out)
        with atomic_path(side) as tmp_side:
            atomic_write_text(json.dumps(card, indent=1), tmp_side)
            side.unlink(missing_ok=True)
            os.replace(tmp, out)  # the model first; atomic_path then renames the sidecar in
    wrote(out, f"{len(classes)} classes, logits within {diff:.2g} of tkvr's")
    wrote(side, "how to feed it (inputs, classes, pre-processing)")
    return card


# The sidecar's fields that decide what a runner computes: a digest over them (card_sha256) lets
# the runner refuse a sidecar whose class order, sizes or normalisation were changed after export.
CARD_FIELDS = ("classes", "frames", "size", "mean", "std", "resize_short_side", "model_sha256")


def card_digest(card: dict) -> str:
    """sha256 of the deciding fields as canonical JSON (examples/run_exported.py computes the same)."""
    fields = {k: card.get(k) for k in CARD_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def room(out: Path, model) -> None:
    """Refuse before exporting when the folder has clearly not the space for the file: a full
    disk inside torch.export.save aborts the process (a C++ abort, no Python error to catch)."""
    need = sum(p.numel() * p.element_size() for p in model.parameters()) + (8 << 20)
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path(".")).free
    if free < 2 * need:  # the temporary file and the checker's copy
        raise Fault(
            f"--out {out}: {free / 2**20:.0f} MiB free in {out.parent}, the export needs about "
            f"{2 * need / 2**20:.0f} MiB; free space or write elsewhere"
        )


def _card(onnx: bool, classes: list[str], pre: dict, frames: int, test_scale: float | None) -> dict:
    """How to feed the exported model (the sidecar's first fields): its input and output, the
    class order, and the pre-processing a runner repeats."""
    size = input_size(pre)
    return {
        "format": "onnx" if onnx else "torch.export",
        "input": {"name": "clips", "shape": ["batch", frames, 3, size, size], "dtype": "float32"},
        "output": {
            "name": "logits",
            "shape": ["batch", len(classes)],
            "scores": "softmax over the last axis",
        },
        "classes": classes,
        "frames": frames,
        "size": size,
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "resize_short_side": short_side(size, test_scale),
        "sampling": (
            f"cut the video of n frames into {frames} equal segments and take the first frame of "
            f"each (frame int(i * n / {frames})); resize each frame's short side to "
            "resize_short_side (bicubic, antialiased), crop the centre size x size, scale RGB to "
            "[0, 1], subtract mean and divide by std per channel"
        ),
    }


def _batch_dim():
    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


def _pt2(model, x: torch.Tensor, path: str) -> torch.Tensor:
    program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim())
    torch.export.save(program, path)
    with torch.no_grad():
        return torch.export.load(path).module()(x)


def _onnx(model, x: torch.Tensor, path: str) -> torch.Tensor:
    import onnxruntime  # deferred: the [export] extra, only for .onnx

    program = torch.onnx.export(
        model,
        (x,),
        dynamic_shapes=_batch_dim(),
        input_names=["clips"],
        output_names=["logits"],
        dynamo=True,
        verbose=False,
    )
    program.save(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"clips": x.numpy()})[0])
