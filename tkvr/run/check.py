"""`tkvr check`: read every sample of a split the way training will and report what does not
read; or read given files the way eval and predict do, and save the pixels each view feeds the
model (--save-views)."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tkvr.base.fileio import atomic_write_bytes
from tkvr.base.procs import loader_args
from tkvr.base.progress import count, track, wrote
from tkvr.data.loader import read_indexed
from tkvr.data.sampling import segment_indices
from tkvr.data.settings import stem_of
from tkvr.data.specs import Sample, resolve
from tkvr.data.transforms import EvalTransform
from tkvr.data.video import Reading, UnreadableVideo, denied, reason, why_missing
from tkvr.run import auto


class _Probe:
    """Dataset of (index, status, message): status ok | missing | empty | unreadable."""

    def __init__(self, samples, frames, reading: Reading):
        self.samples, self.frames, self.reading = samples, frames, reading

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        if not os.path.exists(s.path):
            return i, "missing", why_missing(s.path)
        if os.path.isfile(s.path) and os.path.getsize(s.path) == 0:
            return i, "empty", "0 bytes"
        try:
            # The test clip's frames and the last frame: training may draw any frame up to it.
            reader = self.reading.open(s.path)
            try:
                n = len(reader)
                reader.read(segment_indices(n, self.frames, train=False) + [n - 1])
            finally:
                reader.close()
        except (UnreadableVideo, FileNotFoundError, IndexError) as e:
            return i, "unreadable", str(e)
        except OSError as e:  # e.g. a frame folder that cannot be listed
            return i, "unreadable", f"{s.path}: {denied(e)}"
        return i, "ok", ""


def check(s, *, split: str, frames: int) -> dict:
    """Every sample of `split` of the source `s` (a SourceConfig) read as training reads `frames`
    of it. -> the report: counts per class, the samples that are missing, empty or do not read
    (with why, in `notes`), the videos the annotations list that are not on disk, the decoder."""
    src = resolve(s.data, s.data_root, s.fold_or())
    samples = src.split(split)
    decoder = auto.decoder(s.decoder)
    loader = DataLoader(
        _Probe(samples, frames, Reading.of(src, decoder, s.decode_device)),
        batch_size=None,
        **loader_args(auto.workers(s.workers)),
    )
    status: dict[str, list[int]] = {"missing": [], "empty": [], "unreadable": []}
    notes = {}
    for i, st, msg in track(loader, len(samples), f"checking {src.name} {split}"):
        if st != "ok":
            status[st].append(i)
            notes[samples[i].path] = msg
    bad = sorted(status["missing"] + status["empty"] + status["unreadable"])
    counts = Counter(x.label for x in samples)
    return {
        "num_samples": len(samples),
        "num_classes": len(src.classes),
        "classes": src.classes,
        "samples_per_class": [counts.get(y, 0) for y in range(len(src.classes))],
        "unreadable": [samples[i].path for i in bad],
        "missing": [samples[i].path for i in status["missing"]],
        "empty": [samples[i].path for i in status["empty"]],
        "listed_not_on_disk": src.missing.get(split, []),
        "decoder": decoder,
        "data": src.name,
        "split": split,
        "notes": notes,  # path -> why it did not read
    }


# ---------------------------------------------------------------- what the model sees
def check_files(
    paths: list[str],
    *,
    frames: int,
    views: tuple[int, int],
    size: int,
    scale: float | None,
    decoder: str,
    save: str | None,
    device: str = "cpu",
) -> dict:
    """Each input read as eval and predict read it (read_indexed, then EvalTransform.views: the
    same functions, so the same pixels); with `save`, every view's frames as PNG files and a
    contact sheet per input. -> the report: per input its frame indices [C][T] or why it did not
    read."""
    clips, crops = views
    # The uint8 half of the eval transform needs only the size; mean and std apply after it.
    crop = EvalTransform({"size": size, "mean": (0.0,) * 3, "std": (1.0,) * 3}, crops, scale)
    decoder = auto.decoder(decoder, quiet=True)
    report = {
        "files": [],
        "unreadable": [],
        "notes": {},
        "views": f"{clips}x{crops}",
        "frames": frames,
        "size": size,
        "short_side": crop.short,
        "decoder": decoder,
    }
    for path in track(paths, len(paths), "reading views"):
        try:
            # [C, T, 3, H, W]
            x, idx = read_indexed(Sample(path, -1), frames, False, clips, Reading(decoder, device))
        except (UnreadableVideo, FileNotFoundError, IndexError) as e:
            report["unreadable"].append(path)
            report["notes"][path] = reason(path, e)
            continue
        except OSError as e:
            report["unreadable"].append(path)
            report["notes"][path] = f"{path}: {denied(e)}"
            continue
        pixels = torch.cat([crop.views(c) for c in x])  # [C*S, T, 3, size, size], clip-major
        report["files"].append(
            {"file": path, "frames_read": [list(c) for c in idx], "shape": list(x.shape[-2:])}
        )
        if save:
            _save_views(pixels, [c for c in idx for _ in range(crops)], Path(save), Path(path), crops)
    if save:
        wrote(save, f"each view's pixels and a contact sheet, for {count(len(report['files']), 'input')}")
    return report


def _save_views(pixels: torch.Tensor, idx: list[list[int]], out: Path, path: Path, crops: int) -> None:
    """DIR/<stem>/view{VV}_frame{TT}.png (uint8 RGB) and DIR/<stem>.png, the contact sheet: a row
    per view, a column per frame, each labelled with its frame index in the video."""
    from PIL import Image, ImageDraw, ImageFont  # deferred: only --save-views draws

    stem = stem_of(str(path))
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    v_n, t_n, _, s, _ = pixels.shape
    px = max(10, s // 12)  # label text, readable on a sheet shrunk to a third
    font = ImageFont.load_default(size=px)
    band, side = px + 6, 5 * px  # a label band above each frame, the view's name left of each row
    sheet = Image.new("RGB", (side + t_n * s, v_n * (s + band)), "white")
    draw = ImageDraw.Draw(sheet)
    for v in range(v_n):
        y = v * (s + band)
        name = f"view {v:02d}\nclip {v // crops}\ncrop {v % crops}"
        draw.text((4, y + band + 4), name, fill="black", font=font)
        for t in range(t_n):
            img = Image.fromarray(pixels[v, t].permute(1, 2, 0).contiguous().numpy())
            _write_png(img, folder / f"view{v:02d}_frame{t:02d}.png")
            sheet.paste(img, (side + t * s, y + band))
            draw.text((side + t * s + 2, y + 2), f"frame {idx[v][t]}", fill="black", font=font)
    _write_png(sheet, out / f"{stem}.png")


def _write_png(img, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(buf.getvalue(), path)
