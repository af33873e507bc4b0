import torch

from tkvr.data.specs import resolve
from tkvr.data.toy import direction_pair, make_clip, toy_classes, unseen_classes
from tkvr.data.video import VideoFile


def test_left_and_right_are_time_reversals():
    a = make_clip("red", "circle", "left", torch.Generator().manual_seed(5))
    b = make_clip("red", "circle", "right", torch.Generator().manual_seed(5))
    assert torch.equal(a, b.flip(0))  # same frames, opposite order: only order tells them apart
    assert not torch.equal(a[0], a[-1])


def test_classes_pairs_and_held_out_combinations():
    classes = toy_classes()
    assert len(classes) == 60 and len(set(classes)) == 60
    assert "a red circle moving left" in classes
    for c in classes:
        assert direction_pair(c) in classes and direction_pair(direction_pair(c)) == c
    unseen = unseen_classes()
    combos = {c.rsplit(" moving", 1)[0] for c in unseen}
    assert len(unseen) == 20 and len(combos) == 5
    seen_combos = {c.rsplit(" moving", 1)[0] for c in classes if c not in unseen}
    assert not combos & seen_combos  # held out in every direction


def test_toy_dataset_is_real_video_files():
    src = resolve("toy")
    assert src.flip is False and len(src.classes) == 60
    train, val = src.split("train"), src.split("val")
    assert len(train) == 60 * 8 and len(val) == 60 * 4
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    v = VideoFile(train[0].path, "pyav")
    assert len(v) == 16 and v.read([0, 15]).shape == (2, 3, 64, 64)
    seen, unseen = resolve("toy@seen"), resolve("toy@unseen")
    assert len(seen.classes) == 40 and len(unseen.classes) == 20
    assert not {s.path for s in seen.split("train")} & {s.path for s in unseen.split("train")}
    assert unseen.classes == unseen_classes()
