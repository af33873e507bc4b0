"""From samples to batches: the clip dataset, bad-file handling and DataLoader settings.

Training items: `video` float [T, 3, H, W], `label`, `index` (the sample actually used), `bad`
(every sample that failed to read before this one did: a batch holds them as [B, K], -1 padded)
and `why` (their errors). An unreadable training video (missing, empty, truncated, not a video)
is replaced by another sample of the same class; the main process counts, lists and warns once
for each distinct bad sample, and the engine stops the run (exit 1, the list written) when their
share passes `--max-bad-fraction` (BadFiles).

Eval items: `video` float [V, T, 3, H, W] with V = C temporal clips x S crops, all frames of the C
clips read with one decoder call per video. An unreadable eval video gives `bad` = its index and
a zero video; the evaluator leaves it out of the metrics and reports it.

All randomness (segment offsets, crops, flips, replacements) comes from torch's RNG, which the
DataLoader seeds per worker from the loader's generator: augmentations differ per worker and per
epoch, and a seeded run repeats exactly.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tkvr.base.errors import Fault, TkvrError
from tkvr.base.fileio import atomic_write_text
from tkvr.base.procs import loader_args
from tkvr.data.sampling import label_fraction, segment_indices
from tkvr.data.specs import Sample
from tkvr.data.transforms import ClipAugment, EvalTransform, rand_augment, train_transform
from tkvr.data.video import Reading, UnreadableVideo, reason

log = logging.getLogger("tkvr")


def read_clip(*args, **kwargs) -> torch.Tensor:
    """uint8 [clips, T, 3, H, W] for one sample (read_indexed's arguments); raises UnreadableVideo /
    FileNotFoundError."""
    return read_indexed(*args, **kwargs)[0]


def read_indexed(
    sample: Sample,
    frames: int,
    train: bool,
    clips: int = 1,
    reading: Reading = Reading(),
    rng: random.Random | None = None,
) -> tuple[torch.Tensor, list[list[int]]]:
    """read_clip's frames and the frame index of each: (uint8 [clips, T, 3, H, W], [clips][T])."""
    reader = reading.open(sample.path)
    try:
        idx = [segment_indices(len(reader), frames, train, c, clips, rng) for c in range(clips)]
        x = reader.read([i for clip in idx for i in clip])  # one call for all clips: [clips*T, 3, H, W]
    finally:
        reader.close()
    return x.reshape(clips, frames, *x.shape[1:]), idx


@dataclass(frozen=True)
class Training:
    """A training set's clips: one random clip a sample, an unreadable one replaced by another of
    its class (named by `classes` in warnings); `augment`, a ClipAugment: clips leave as uint8 with
    their crop parameters; `randaug`: --randaugment on the uint8 clip before the crop, in the worker."""

    classes: list[str] | None = None
    augment: object = None
    randaug: object = None


@dataclass(frozen=True)
class Scoring:
    """An eval set's clips: `clips` temporal clips a sample, an unreadable sample left out of the
    metrics (`warn`: a warning for each; predict gives the reason in its row instead)."""

    clips: int = 1
    warn: bool = True


class ClipDataset(Dataset):
    """Clips of `samples`, `frames` frames each, read as `reading` says, through `transform`; `mode`
    says whether for training or scoring (Training / Scoring)."""

    def __init__(
        self,
        samples: list[Sample],
        frames: int,
        transform,
        reading: Reading = Reading(),
        mode: Training | Scoring = Scoring(),
    ):
        self.samples = samples
        self.frames = frames
        self.transform = transform
        self.reading = reading
        self.mode = mode
        self.train = isinstance(mode, Training)
        self.clips = 1 if self.train else mode.clips
        by_class = defaultdict(list)
        for i, s in enumerate(samples):
            by_class[s.label].append(i)
        self.by_class = dict(by_class)
        self.known_bad: set[int] = set()  # samples this process found unreadable: never a replacement

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, label: int) -> str:
        return repr(self.mode.classes[label]) if self.mode.classes else f"id {label}"

    def _read(self, i: int) -> torch.Tensor:
        rng = random.Random(int(torch.randint(2**62, ()))) if self.train else None
        return read_clip(self.samples[i], self.frames, self.train, self.clips, self.reading, rng)

    def __getitem__(self, i: int) -> dict:
        label = self.samples[i].label
        if not self.train:
            try:
                x = self._read(i)  # [C, T, 3, H, W] uint8
                views = torch.cat([self.transform(c) for c in x])  # [C*S, T, 3, H, W]
                return {"video": views, "label": label, "index": i, "bad": -1, "why": {}}
            except (UnreadableVideo, OSError) as e:  # missing, or no permission to read
                if self.mode.warn:
                    warn_once(self.samples[i].path, f"unreadable, left out of the metrics: {e}")
                why = {i: reason(self.samples[i].path, e)}
                return {"video": None, "label": label, "index": i, "bad": i, "why": why}
        # An unreadable video is replaced by another of its class, never one known to be bad, in
        # random order until one reads; every one that failed on the way is reported (`bad`, `why`)
        # and the budget (BadFiles, in the main process) counts, lists and warns once for each.
        bad, why, j = [], {}, i
        pool = [k for k in self.by_class[label] if k != i and k not in self.known_bad]
        while True:
            try:
                x = self._read(j)[0]  # [T, 3, H, W] uint8
                if self.mode.randaug is not None:
                    x = self.mode.randaug(x)  # T leads as a batch dimension: one draw of ops for the clip
                if self.mode.augment is not None:  # cropped and normalised on the device, as these say
                    return {
                        "video": x,
                        "params": self.mode.augment.draw(*x.shape[-2:]),
                        "label": label,
                        "index": j,
                        "bad": bad,
                        "why": why,
                    }
                return {"video": self.transform(x), "label": label, "index": j, "bad": bad, "why": why}
            except (UnreadableVideo, OSError) as e:  # missing, or no permission to read
                self.known_bad.add(j)
                bad.append(j)
                why[j] = f"unreadable, replaced by another {self._name(label)} sample: {e}"
                pool = [k for k in pool if k not in self.known_bad]
                if not pool:
                    raise TkvrError(
                        f"every training video of class {self._name(label)} is unreadable (e.g. "
                        f"{self.samples[i].path}); run tkvr check on the dataset"
                    ) from None
                j = pool[int(torch.randint(len(pool), ()))]


_warned: set[str] = set()


def warn_once(path: str, message: str) -> None:
    """An eval decoder warning once per file and process, not once per epoch."""
    if path not in _warned:
        _warned.add(path)
        log.warning("%s", message)


def _bad(items: list[dict]) -> torch.Tensor:
    """Eval items: one index or -1 each -> [B]. Training items: the list of samples that failed
    before one read -> [B, K] padded with -1."""
    if not isinstance(items[0]["bad"], list):
        return torch.tensor([it["bad"] for it in items])
    k = max(1, max(len(it["bad"]) for it in items))
    return torch.tensor([it["bad"] + [-1] * (k - len(it["bad"])) for it in items], dtype=torch.long)


def collate(items: list[dict]) -> dict:
    """Stack items; eval items whose video is unreadable get zeros of the right shape. Items for
    device-side augmentation keep their stored sizes: a list of uint8 clips, stacked when alike."""
    why = {k: v for it in items for k, v in it.get("why", {}).items()}  # training items' errors
    if "params" in items[0]:
        clips = [it["video"] for it in items]
        same = all(c.shape == clips[0].shape for c in clips)
        return {
            "video": torch.stack(clips) if same else clips,
            "params": torch.stack([it["params"] for it in items]),
            **{k: torch.tensor([it[k] for it in items]) for k in ("label", "index")},
            "bad": _bad(items),
            "why": why,
        }
    shape = next((it["video"].shape for it in items if it["video"] is not None), None)
    videos = [it["video"] if it["video"] is not None else torch.zeros(shape) for it in items] if shape else []
    batch = {
        "video": torch.stack(videos) if videos else torch.empty(0),
        "label": torch.tensor([it["label"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        "bad": _bad(items),
    }
    if "why" in items[0]:
        batch["why"] = why
    return batch


class BadFiles:
    """Distinct unreadable training samples: each counted once, warned about once (here, in the
    main process, whatever the worker count), listed in `listing`, and an error once their share
    passes the budget.

    Under DDP each rank sees its own share, so the budget is checked on the union over ranks
    (`merge`, at the end of every epoch, on every rank alike); a single process also checks
    after every batch, so it stops at once."""

    def __init__(self, samples: list[Sample], max_fraction: float, listing: Path | None = None):
        self.samples = samples
        self.max_fraction = max_fraction
        self.listing = listing
        self.bad: set[int] = set()

    def update(self, bad: torch.Tensor, why: dict | None = None, check: bool = True) -> None:
        new = {int(b) for b in bad.flatten().tolist() if b >= 0} - self.bad
        for b in sorted(new):
            log.warning("%s", (why or {}).get(b) or f"unreadable, replaced: {self.samples[b].path}")
        self.bad |= new
        if check:
            self.check()

    def check(self) -> None:
        if self.bad and len(self.bad) / len(self.samples) > self.max_fraction:
            first = self.samples[min(self.bad)].path
            where = "run tkvr check on the dataset to list them"
            if self.listing is not None:
                atomic_write_text("".join(p + "\n" for p in self.paths()), self.listing)
                where = f"all listed in {self.listing}"
            raise Fault(
                f"{len(self.bad)} of {len(self.samples)} training videos are unreadable "
                f"({100 * len(self.bad) / len(self.samples):.1f}% > --max-bad-fraction "
                f"{self.max_fraction}; first: {first}); {where}: repair or remove them, or raise "
                "--max-bad-fraction"
            )

    def merge(self, fabric) -> None:
        """The union of every rank's bad samples, on every rank."""
        if fabric.world_size == 1:
            return
        local = torch.tensor(sorted(self.bad), dtype=torch.long, device=fabric.device)
        n = int(fabric.all_gather(torch.tensor(len(local), device=fabric.device)).max()) + 1
        padded = torch.cat([local, torch.full((n - len(local),), -1, dtype=torch.long, device=fabric.device)])
        self.bad |= {int(b) for b in fabric.all_gather(padded).flatten().tolist() if b >= 0}

    def paths(self) -> list[str]:
        return [self.samples[i].path for i in sorted(self.bad)]


# ---------------------------------------------------------------- samplers and loaders
class EpochSampler(Sampler):
    """This rank's share of a seeded permutation per epoch (train), or of the plain order (eval).

    train: every rank takes rank::world of the same permutation, truncated to equal length so
    all ranks step together. eval: rank::world without padding or truncation, so every sample is
    scored exactly once across ranks.
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1, shuffle: bool = True, seed: int = 0):
        self.n, self.rank, self.world, self.shuffle, self.seed = n, rank, world, shuffle, seed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:  # not set_epoch: Fabric would call that with its own count
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world))
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        usable = (self.n // self.world) * self.world or self.n
        return perm[:usable][self.rank :: self.world]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def loader(
    dataset,
    batch: int,
    shuffle: bool,
    workers: int,
    seed: int,
    rank: int,
    world: int,
    drop_last: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=EpochSampler(len(dataset), rank, world, shuffle, seed),
        **loader_args(workers),
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        prefetch_factor=2 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def eval_loader(fabric, dataset, batch: int, workers: int) -> DataLoader:
    """The one evaluation loader: plain order, this rank's share, set up by Fabric."""
    dl = loader(
        dataset,
        batch,
        False,
        workers,
        0,
        fabric.global_rank,
        fabric.world_size,
    )
    return fabric.setup_dataloaders(dl, use_distributed_sampler=False)


def start_epoch(dl: DataLoader, epoch: int, seed: int, rank: int) -> None:
    """Per-epoch, per-rank seeds for the sampler and the workers' RNG (a new iterator each epoch)."""
    dl.sampler.use_epoch(epoch)
    dl.generator.manual_seed(seed * 100003 + epoch * 1009 + rank)


# ---------------------------------------------------------------- datasets of a run
def eval_set(
    samples: list[Sample],
    reading: Reading,
    frames: int,
    preprocess: dict,
    views: tuple[int, int],
    test_scale: float | None = None,
) -> ClipDataset:
    """Eval clips of `samples`, V = C x S views each (`views`: (C, S))."""
    transform = EvalTransform(preprocess, views[1], test_scale)
    return ClipDataset(samples, frames, transform, reading, Scoring(views[0]))


def datasets(
    d,
    src,
    preprocess: dict,
    *,
    frames: int,
    seed: int,
    reading: Reading,
    train_ids: list[int] | None = None,
):
    """Train and val ClipDatasets over a resolved data source from a run's resolved data settings
    `d` (a DataConfig whose --augment and --randaugment are decided: tkvr.run.auto): `frames` a
    clip, `seed` for --label-fraction's draw, `reading` with the decided --decoder. `train_ids`
    restricts training to those samples (a K-shot sample); else --label-fraction."""

    if "auto" in (d.augment, d.randaugment, reading.decoder):
        raise ValueError("datasets() takes decided settings: resolve them first (tkvr.run.auto)")
    augment = (
        ClipAugment(preprocess, d.train_crop, src.flip, d.crop_area, d.grayscale)
        if d.augment == "device"
        else None
    )
    train = src.split("train")
    if train_ids is None and d.label_fraction < 1:
        train_ids = label_fraction([s.label for s in train], d.label_fraction, seed)
    if train_ids is not None:
        train = [train[i] for i in train_ids]
    transform = train_transform(preprocess, d.train_crop, src.flip, d.crop_area, d.grayscale)
    training = Training(src.classes, augment, rand_augment(d.randaugment))
    train_set = ClipDataset(train, frames, transform, reading, training)
    val_set = eval_set(src.split("val"), reading, frames, preprocess, d.views, d.test_scale)
    return train_set, val_set
