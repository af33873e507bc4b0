"""Which frames of a video to read, and which videos of a split to use.

Segment sampling (TSN). A video of n frames is cut into T equal segments; one frame is taken from
each. Frame i of the clip is  floor((i + u) * n / T), clamped to n - 1, where
  - train: u ~ U[0, 1) drawn independently per segment (a random frame inside each segment);
  - test, clip c of C: u = (c + 0.5) / C, the same for every segment (C = 1 gives the centres).

Worked examples (n = 100, T = 4): test, C = 1 -> [12, 37, 62, 87]; test, C = 2 -> [6, 31, 56, 81]
and [18, 43, 68, 93]. A clip shorter than T repeats frames: n = 3, T = 8, C = 1 -> [0, 0, 0, 1,
1, 2, 2, 2]. Every index lies in [0, n - 1].

Subsets. `label_fraction` keeps round(f * n_c) (at least 1) videos of every class c; `k_shot`
keeps exactly K of every class. Both draw with Python's `random.Random(seed)` over the split's
samples in their file order, per class in class order, so every rank and every process that
reads the same split with the same seed gets the same list, with no communication.
"""

from __future__ import annotations

import random
from collections import defaultdict

from tkvr.base.errors import TkvrError


def segment_indices(
    n: int, t: int, train: bool, clip: int = 0, clips: int = 1, rng: random.Random | None = None
) -> list[int]:
    if n < 1 or t < 1:
        raise ValueError(f"need n >= 1 and t >= 1, got n={n}, t={t}")
    if train:
        rng = rng or random
        us = [rng.random() for _ in range(t)]
    else:
        us = [(clip + 0.5) / clips] * t
    return [min(n - 1, int((i + u) * n / t)) for i, u in enumerate(us)]


def _by_class(labels: list[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        groups[y].append(i)
    return groups


def label_fraction(labels: list[int], fraction: float, seed: int = 0) -> list[int]:
    """Indices of a stratified subset: round(fraction * n_c), at least 1, of every class."""
    if not 0 < fraction <= 1:
        raise TkvrError(f"--label-fraction must be in (0, 1], got {fraction}")
    rng = random.Random(seed)
    keep = []
    for y, idx in sorted(_by_class(labels).items()):
        k = max(1, round(fraction * len(idx)))
        keep += sorted(rng.sample(idx, k))
    return sorted(keep)


def k_shot(labels: list[int], k: int, seed: int = 0, classes: list[str] | None = None) -> list[int]:
    """Indices of exactly k samples of every class present."""
    if k < 1:
        raise TkvrError(f"--shots must be >= 1, got {k}")
    rng = random.Random(seed)
    keep = []
    groups = _by_class(labels)
    for y in range(len(classes) if classes else 0):
        groups.setdefault(y, [])
    for y, idx in sorted(groups.items()):
        if len(idx) < k:
            name = classes[y] if classes else str(y)
            raise TkvrError(
                f"--shots {k}: class {name!r} has only {len(idx)} training samples; "
                f"use --shots {len(idx)} or fewer"
            )
        keep += sorted(rng.sample(idx, k))
    return sorted(keep)
