"""tkvr check: read every sample of a split the way training will, and report what does not read."""

from __future__ import annotations

from collections import Counter

from tkvr.config import CheckConfig
from tkvr.progress import console, count, say, track


class _Probe:
    """Dataset of (index, status, message): status ok | missing | empty | unreadable."""

    def __init__(self, samples, frames, decoder, device, template, start):
        self.samples, self.frames, self.decoder, self.device = samples, frames, decoder, device
        self.template, self.start = template, start

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        import os

        from tkvr.data.sampling import segment_indices
        from tkvr.data.video import UnreadableVideo, open_reader, why_missing

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
        return i, "ok", ""


def run(cfg: CheckConfig) -> int:
    from torch.utils.data import DataLoader

    from tkvr.data.loader import workers_for
    from tkvr.data.specs import resolve
    from tkvr.data.video import pick_decoder
    from tkvr.fileio import write_json

    cfg.validate()
    s = cfg.source
    src = resolve(s.data, s.data_root, s.fold_or())
    samples = src.split(cfg.split)
    decoder = pick_decoder(s.decoder)
    workers = workers_for(s.workers)
    loader = DataLoader(
        _Probe(samples, cfg.frames, decoder, s.decode_device, src.frame_template, src.frame_start),
        batch_size=None,
        num_workers=workers,
    )
    status: dict[str, list[int]] = {"missing": [], "empty": [], "unreadable": []}
    notes = {}
    for i, st, msg in track(loader, len(samples), f"checking {src.name} {cfg.split}"):
        if st != "ok":
            status[st].append(i)
            notes[i] = msg
    bad = sorted(status["missing"] + status["empty"] + status["unreadable"])
    counts = Counter(s.label for s in samples)
    listed_missing = src.missing.get(cfg.split, [])

    from rich.table import Table

    table = Table(title=f"{src.name} / {cfg.split}: samples per class")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for y, name in enumerate(src.classes):
        table.add_row(str(y), name, str(counts.get(y, 0)))
    con = console()
    if len(src.classes) <= 60:
        con.print(table)
    sizes = [counts.get(y, 0) for y in range(len(src.classes))]
    say(
        f"{count(len(samples), 'sample')}, {count(len(src.classes), 'class')} (per class: min {min(sizes)}, "
        f"max {max(sizes)}); decoder {decoder}"
    )
    if listed_missing:
        say(f"{count(len(listed_missing), 'video')} listed in the annotations are not on disk (left out)")
    for kind in ("missing", "empty", "unreadable"):
        for i in status[kind][:20]:
            say(f"{kind}: {samples[i].path} ({notes[i]})")
        if len(status[kind]) > 20:
            say(f"... and {len(status[kind]) - 20} more {kind}")
    empty_classes = [src.classes[y] for y in range(len(src.classes)) if counts.get(y, 0) == 0]
    if empty_classes:
        say(f"{count(len(empty_classes), 'class')} with no {cfg.split} samples (e.g. {empty_classes[:3]})")
    say("all samples read" if not bad else f"{len(bad)} of {len(samples)} samples do not read")
    if cfg.json:
        report = {
            "num_samples": len(samples),
            "num_classes": len(src.classes),
            "classes": src.classes,
            "samples_per_class": sizes,
            "unreadable": [samples[i].path for i in bad],
            "missing": [samples[i].path for i in status["missing"]],
            "empty": [samples[i].path for i in status["empty"]],
            "listed_not_on_disk": listed_missing,
            "decoder": decoder,
        }
        write_json(report, cfg.json)
    return 1 if bad else 0
