"""From samples to batches: the clip dataset, bad-file handling and DataLoader settings.

Training items: `video` float [T, 3, H, W], `label`, `index` (the sample actually used), `bad`
(the index of an unreadable sample that this item replaced, or -1). An unreadable training video
(missing, empty, truncated, not a video) is logged, replaced by another sample of the same class,
and counted; the engine stops the run when the share of distinct bad samples passes
`--max-bad-fraction` (BadFiles).

Eval items: `video` float [V, T, 3, H, W] with V = C temporal clips x S crops, all frames of the C
clips read with one decoder call per video. An unreadable eval video gives `bad` = its index and
a zero video; the evaluator leaves it out of the metrics and reports it.

All randomness (segment offsets, crops, flips, replacements) comes from torch's RNG, which the
DataLoader seeds per worker from the loader's generator: augmentations differ per worker and per
epoch, and a seeded run repeats exactly.
"""

from __future__ import annotations

import logging
import os
import random
from collections import defaultdict

import torch
from torch.utils.data import Dataset

from tkvr.data.sampling import segment_indices
from tkvr.data.specs import Sample
from tkvr.data.video import (UnreadableVideo, VideoFile, kind_of, read_frames_folder, read_image,
                             frame_files)
from tkvr.errors import TkvrError

log = logging.getLogger("tkvr")
RETRIES = 5


def read_clip(sample: Sample, frames: int, train: bool, clips: int = 1, decoder: str = "torchcodec",
              device: str = "cpu", frame_template: str = "img_{:05d}.jpg", frame_start: int = 1,
              rng: random.Random | None = None) -> torch.Tensor:
    """uint8 [clips, T, 3, H, W] for one sample; raises UnreadableVideo / FileNotFoundError."""
    kind = kind_of(sample.path)
    if kind == "image":
        img = read_image(sample.path)  # [1, 3, H, W]
        return img.expand(clips, frames, *img.shape[1:])
    if kind == "frames":
        n = frame_files(sample.path, frame_template, sample.frames, frame_start)
        if n == 0:
            raise UnreadableVideo(f"{sample.path}: no frames matching {frame_template}")
    else:
        video = VideoFile(sample.path, decoder, device)
        n = len(video)
    idx = []
    for c in range(clips):
        idx += segment_indices(n, frames, train, c, clips, rng)
    if kind == "frames":
        x = read_frames_folder(sample.path, idx, frame_template, frame_start)
    else:
        try:
            x = video.read(idx)  # one call for all clips: [clips*T, 3, H, W]
        finally:
            video.close()
    return x.reshape(clips, frames, *x.shape[1:])


class ClipDataset(Dataset):
    def __init__(self, samples: list[Sample], frames: int, transform, train: bool, views: tuple[int, int] = (1, 1),
                 decoder: str = "torchcodec", device: str = "cpu", frame_template: str = "img_{:05d}.jpg",
                 frame_start: int = 1):
        self.samples = samples
        self.frames = frames
        self.transform = transform
        self.train = train
        self.clips = views[0]
        self.decoder = decoder
        self.device = device
        self.frame_template = frame_template
        self.frame_start = frame_start
        by_class = defaultdict(list)
        for i, s in enumerate(samples):
            by_class[s.label].append(i)
        self.by_class = dict(by_class)

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, i: int) -> torch.Tensor:
        rng = random.Random(int(torch.randint(2 ** 62, ()))) if self.train else None
        return read_clip(self.samples[i], self.frames, self.train, 1 if self.train else self.clips,
                         self.decoder, self.device, self.frame_template, self.frame_start, rng)

    def __getitem__(self, i: int) -> dict:
        label = self.samples[i].label
        if not self.train:
            try:
                x = self._read(i)  # [C, T, 3, H, W] uint8
                views = torch.cat([self.transform(c) for c in x])  # [C*S, T, 3, H, W]
                return {"video": views, "label": label, "index": i, "bad": -1}
            except (UnreadableVideo, FileNotFoundError) as e:
                log.warning("unreadable: %s", e)
                return {"video": None, "label": label, "index": i, "bad": i}
        bad, j = -1, i
        for _ in range(RETRIES):
            try:
                x = self._read(j)[0]  # [T, 3, H, W] uint8
                return {"video": self.transform(x), "label": label, "index": j, "bad": bad}
            except (UnreadableVideo, FileNotFoundError) as e:
                log.warning("unreadable, replaced by another %s sample: %s", label, e)
                bad = i if bad < 0 else bad
                pool = self.by_class[label]
                j = pool[int(torch.randint(len(pool), ()))]
        raise TkvrError(f"class {label}: {RETRIES} unreadable videos in a row (last: {self.samples[j].path}); "
                        "run tkvr check on the dataset")


def collate(items: list[dict]) -> dict:
    """Stack items; eval items whose video is unreadable get zeros of the right shape."""
    shape = next((it["video"].shape for it in items if it["video"] is not None), None)
    videos = [it["video"] if it["video"] is not None else torch.zeros(shape) for it in items] if shape else []
    return {
        "video": torch.stack(videos) if videos else torch.empty(0),
        "label": torch.tensor([it["label"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        "bad": torch.tensor([it["bad"] for it in items]),
    }


def workers_for(setting: int | None) -> int:
    """--workers as given, or the machine's default when it is not."""
    return default_workers() if setting is None else setting


def default_workers() -> int:
    """One worker per core, leaving one for the main process; at most 8 per device."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


class BadFiles:
    """Distinct unreadable training samples; an error once their share passes the budget."""

    def __init__(self, samples: list[Sample], max_fraction: float):
        self.samples = samples
        self.max_fraction = max_fraction
        self.bad: set[int] = set()

    def update(self, bad: torch.Tensor) -> None:
        new = {int(b) for b in bad.tolist() if b >= 0} - self.bad
        self.bad |= new
        if self.bad and len(self.bad) / len(self.samples) > self.max_fraction:
            first = self.samples[min(self.bad)].path
            raise TkvrError(f"{len(self.bad)} of {len(self.samples)} training videos are unreadable "
                            f"({100 * len(self.bad) / len(self.samples):.1f}% > --max-bad-fraction "
                            f"{self.max_fraction}; first: {first}); run tkvr check --data ... to list them")

    def paths(self) -> list[str]:
        return [self.samples[i].path for i in sorted(self.bad)]
