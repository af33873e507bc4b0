"""Which frames of a video to read, and which videos of a split to use.

Segment sampling (TSN). A video of n frames is cut into T equal segments of tick = n / T frames.

  - train: frame i of the clip is floor((i + u) * tick), clamped to n - 1, with u ~ U[0, 1) drawn
    independently per segment (a random frame inside each segment).
  - test (eval, predict, zero-shot and few-shot scoring, train's validation): the released test
    protocol (whwu95/Text4Vis at 238c07f, datasets/datasets.py `Video_dataset._get_test_indices`,
    uniform sampling): clip c of C starts at s_c, the c-th of C evenly spaced points from 0 to
    tick - 1 (numpy's `linspace(0, tick - 1, C)` cut to an integer), and frame i is
    int(s_c + tick * i) mod n: the first frame of each segment, shifted by s_c. Clip 0 is the
    1-clip view; C = 1 gives floor(i * tick), the released validation's frames too.

Worked examples (n = 100, T = 4): test, C = 1 -> [0, 25, 50, 75]; C = 2 -> [0, 25, 50, 75] and
[24, 49, 74, 99]; n = 300, T = 8, C = 4: starts 0, 12, 24, 36.

Short videos. Fewer frames than T (tick < 1): frames repeat, n = 3, T = 8 -> [0, 0, 0, 1, 1, 1, 2,
2], and every clip starts at 0 (the points from 0 to the negative tick - 1 are cut towards zero, as
numpy 1.x, which the release ran on, cut them; numpy 2 floors them to -1, which would wrap the
first frame to the last). Fewer frames than T x C (but at least T): the clips' starts lie within
one segment and may coincide (n = 10, T = 8, C = 4: all four clips are [0, 1, 2, 3, 5, 6, 7, 8]);
their scores are averaged as released. Every index lies in [0, n - 1].

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
        return [min(n - 1, int((i + rng.random()) * n / t)) for i in range(t)]
    tick = n / t
    start = clip_start(tick, clip, clips)
    return [int(start + tick * i) % n for i in range(t)]


def clip_start(tick: float, clip: int, clips: int) -> int:
    """The released clip start: the clip-th of `clips` points evenly spaced from 0 to tick - 1,
    computed as numpy's linspace computes them (clip * step, the last one exactly tick - 1), cut
    to an integer towards zero and never below 0."""
    if clips == 1:
        return 0
    s = tick - 1 if clip == clips - 1 else clip * ((tick - 1) / (clips - 1))
    return max(0, int(s))


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
