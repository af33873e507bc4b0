"""Read every sample of a split the way training will, and report what does not read (`tkvr check`)."""

from __future__ import annotations

import os
from collections import Counter

from torch.utils.data import DataLoader

from tkvr.base.procs import readers
from tkvr.base.progress import track
from tkvr.data.loader import workers_for
from tkvr.data.sampling import segment_indices
from tkvr.data.specs import resolve
from tkvr.data.video import UnreadableVideo, denied, open_reader, pick_decoder, why_missing


class _Probe:
    """Dataset of (index, status, message): status ok | missing | empty | unreadable."""

    def __init__(self, samples, frames, decoder, device, template, start):
        self.samples, self.frames, self.decoder, self.device = samples, frames, decoder, device
        self.template, self.start = template, start

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
            reader = open_reader(s.path, self.decoder, self.device, self.template, s.frames, self.start)
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
    decoder = pick_decoder(s.decoder)
    loader = DataLoader(
        _Probe(samples, frames, decoder, s.decode_device, src.frame_template, src.frame_start),
        batch_size=None,
        num_workers=workers_for(s.workers),
        multiprocessing_context=readers() if workers_for(s.workers) > 0 else None,
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
