import json
import subprocess
import sys

import numpy as np
import pytest

from tkvr.base.errors import TkvrError
from tkvr.data.sampling import k_shot, label_fraction, segment_indices
from tkvr.data.settings import parse_views
from tkvr.data.specs import subset_ids


def test_segment_examples_from_the_docstring():
    assert segment_indices(100, 4, False) == [0, 25, 50, 75]
    assert segment_indices(100, 4, False, 0, 2) == [0, 25, 50, 75]
    assert segment_indices(100, 4, False, 1, 2) == [24, 49, 74, 99]
    assert segment_indices(3, 8, False) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert [segment_indices(300, 8, False, c, 4)[0] for c in range(4)] == [0, 12, 24, 36]
    assert {tuple(segment_indices(10, 8, False, c, 4)) for c in range(4)} == {(0, 1, 2, 3, 5, 6, 7, 8)}


def released_test_indices(n: int, t: int, clips: int) -> list[int]:
    """The released test sampling (Text4Vis 238c07f, datasets/datasets.py, _get_test_indices,
    uniform), written out: tick = n / T, starts = linspace(0, tick - 1, C) as integers, frame
    int(start + tick * x) % n; 0-based (the release adds index_bias 1, then reads video_list[p - 1])."""
    tick = n / float(t)
    starts = np.linspace(0, tick - 1, num=clips).astype(int)  # truncation, numpy 1.x's integer linspace
    return [int(s + tick * x) % n for s in starts.tolist() for x in range(t)]


@pytest.mark.parametrize("t, clips", [(8, 1), (8, 4), (16, 1), (16, 4), (32, 2), (1, 1), (8, 3)])
def test_test_indices_are_the_released_ones_for_n_1_to_400(t, clips):
    for n in range(1, 401):
        ours = [i for c in range(clips) for i in segment_indices(n, t, False, c, clips)]
        assert ours == released_test_indices(n, t, clips), (n, t, clips)
        assert all(0 <= i < n for i in ours)


def test_first_clip_of_several_is_the_one_clip_view():
    for n in (7, 64, 164, 300):
        assert segment_indices(n, 8, False, 0, 4) == segment_indices(n, 8, False)


def test_train_offsets_stay_in_their_segment():
    import random

    rng = random.Random(1)
    for _ in range(200):
        idx = segment_indices(50, 5, True, rng=rng)
        assert all(10 * i <= x < 10 * (i + 1) for i, x in enumerate(idx))


def test_views():
    assert parse_views("4x3") == (4, 3) and parse_views("1x1") == (1, 1)
    for bad, msg in (("0x3", "C must be 1 to 32"), ("4x2", "must be 1 or 3"), ("four", "CxS")):
        with pytest.raises(TkvrError, match=msg):
            parse_views(bad)


def test_k_shot_exactly_k_per_class():
    labels = [i % 5 for i in range(53)]
    keep = k_shot(labels, 3, seed=7)
    assert sorted(labels[i] for i in keep) == sorted(list(range(5)) * 3)
    assert keep == k_shot(labels, 3, seed=7)
    assert keep != k_shot(labels, 3, seed=8)


def test_k_shot_too_many_names_the_class():
    labels = [0, 0, 0, 1]
    with pytest.raises(TkvrError, match="class 'cat' has only 1"):
        k_shot(labels, 2, classes=["dog", "cat"])
    with pytest.raises(TkvrError, match="class 'bird' has only 0"):
        k_shot([0, 1], 1, classes=["dog", "cat", "bird"])


def test_label_fraction_is_stratified():
    labels = [0] * 50 + [1] * 20 + [2] * 3
    keep = label_fraction(labels, 0.1, seed=0)
    got = [labels[i] for i in keep]
    assert got.count(0) == 5 and got.count(1) == 2 and got.count(2) == 1


CODE = """
import json
from tkvr.data.sampling import k_shot
from tkvr.data.specs import subset_ids
labels = [i % 7 for i in range(100)]
print(json.dumps([k_shot(labels, 2, seed=3), subset_ids(400, 300, True)]))
"""


def test_subsets_identical_in_two_processes():
    runs = [json.loads(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0][1] == subset_ids(400, 300, True)


def test_k300_k100_disjoint_and_cover():
    seen, unseen = subset_ids(400, 300, True), subset_ids(400, 300, False)
    assert len(seen) == 300 and len(unseen) == 100
    assert not set(seen) & set(unseen) and set(seen) | set(unseen) == set(range(400))
    # the written-down rule (docs/data.md): random.Random(0).shuffle of 0..399, first 300 seen
    assert unseen[:5] == sorted(unseen)[:5]
    i600, i400 = subset_ids(1000, 600, True), subset_ids(1000, 600, False)
    assert len(i600) == 600 and len(i400) == 400 and not set(i600) & set(i400)
