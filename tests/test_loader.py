"""Clip datasets: transforms, bad files during training, the bad-file budget, worker seeding."""
import pytest
import torch
from conftest import realdata, write_clip

from tkvr.data.loader import BadFiles, ClipDataset, loader, start_epoch
from tkvr.data.specs import Sample
from tkvr.data.transforms import EvalTransform, train_transform
from tkvr.errors import TkvrError


def make_loader(ds, batch_size, shuffle, workers, seed=0, epoch=0):
    dl = loader(ds, batch_size, shuffle, workers, seed, 0, 1)
    start_epoch(dl, epoch, seed, 0)
    return dl


PRE = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def test_train_transform_is_the_same_for_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 255, (3, 60, 80), dtype=torch.uint8)
    clip = frame.expand(6, 3, 60, 80).clone()  # [T, C, H, W], identical frames
    for crop in ("rrc", "multiscale"):
        for _ in range(5):
            out = train_transform(PRE, crop=crop)(clip)
            assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
            assert torch.equal(out[0], out[5])  # same crop and flip for all frames


def test_eval_transform_views():
    clip = torch.randint(0, 255, (4, 3, 48, 96), dtype=torch.uint8)
    one, three = EvalTransform(PRE, 1)(clip), EvalTransform(PRE, 3)(clip)
    assert one.shape == (1, 4, 3, 32, 32) and three.shape == (3, 4, 3, 32, 32)
    torch.testing.assert_close(three[1], one[0])  # the middle of three crops is the centre crop
    assert not torch.allclose(three[0], three[2])
    # mean / std come from the config: an all-128 clip normalises to (128/255 - .5) / .25
    flat = EvalTransform(PRE, 1)(torch.full((1, 3, 40, 40), 128, dtype=torch.uint8))
    torch.testing.assert_close(flat, torch.full_like(flat, (128 / 255 - 0.5) / 0.25))


@pytest.fixture
def corrupt_set(tmp_path):
    good = [write_clip(tmp_path / f"g{i}.mp4", seed=i) for i in range(4)]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good[0].read_bytes()[:300])
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    samples = [Sample(str(good[0]), 0), Sample(str(good[1]), 0), Sample(str(empty), 0),
               Sample(str(good[2]), 1), Sample(str(trunc), 1), Sample(str(text), 1), Sample(str(good[3]), 1)]
    return samples, {2, 4, 5}


def test_unreadable_training_videos_are_replaced_and_counted(corrupt_set):
    samples, bad_ids = corrupt_set
    ds = ClipDataset(samples, 4, train_transform(PRE), train=True, decoder="pyav")
    seen_bad, budget = set(), BadFiles(samples, max_fraction=0.5)
    for epoch in range(2):
        for batch in make_loader(ds, batch_size=7, shuffle=True, workers=0, epoch=epoch):
            assert batch["video"].shape == (7, 4, 3, 32, 32)
            for used, label in zip(batch["index"].tolist(), batch["label"].tolist()):
                assert used not in bad_ids and samples[used].label == label  # same class
            seen_bad |= {b for b in batch["bad"].flatten().tolist() if b >= 0}
            budget.update(batch["bad"])
    assert seen_bad == bad_ids
    assert sorted(budget.paths()) == sorted(samples[i].path for i in bad_ids)


def test_bad_fraction_budget_stops_the_run(corrupt_set):
    samples, _ = corrupt_set
    ds = ClipDataset(samples, 4, train_transform(PRE), train=True, decoder="pyav")
    budget = BadFiles(samples, max_fraction=0.2)
    with pytest.raises(TkvrError, match=r"3 of 7 training videos are unreadable \(42.9% > --max-bad-fraction 0.2"):
        for batch in make_loader(ds, batch_size=7, shuffle=False, workers=0):
            budget.update(batch["bad"])


def test_eval_marks_unreadable_and_keeps_going(corrupt_set):
    samples, bad_ids = corrupt_set
    ds = ClipDataset(samples, 4, EvalTransform(PRE, 3), train=False, views=(2, 3), decoder="pyav")
    batch = next(iter(make_loader(ds, batch_size=7, shuffle=False, workers=0)))
    assert batch["video"].shape == (7, 6, 4, 3, 32, 32)  # [B, C*S, T, 3, H, W]
    assert {b for b in batch["bad"].tolist() if b >= 0} == bad_ids


def test_workers_draw_different_augmentations_each_epoch(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", frames=40)
    ds = ClipDataset([Sample(str(clip), 0)] * 4, 4, train_transform(PRE), train=True, decoder="pyav")
    epochs = [torch.cat([b["video"] for b in make_loader(ds, 1, False, workers=2, epoch=e)]) for e in (0, 1)]
    assert not torch.equal(epochs[0][0], epochs[0][1])  # items on different workers differ
    assert not torch.equal(epochs[0], epochs[1])  # and epochs differ
    again = torch.cat([b["video"] for b in make_loader(ds, 1, False, workers=2, epoch=0)])
    assert torch.equal(again, epochs[0])  # while the same seed and epoch repeat exactly


def test_real_images_as_one_frame_clips():
    img = realdata("images") / "skimage_chelsea.png"
    ds = ClipDataset([Sample(str(img), 0)], 1, EvalTransform(PRE, 1), train=False)
    item = ds[0]
    assert item["video"].shape == (1, 1, 3, 32, 32) and item["bad"] == -1


def test_randaugment_per_frame_as_released(tmp_path):
    """--randaugment frame (the released GroupTransform): every frame draws its own ops, so one
    clip's frames differ in what was done to them; off builds nothing."""
    from tkvr.data.transforms import rand_augment

    assert rand_augment("off") is None
    ra = rand_augment("frame")
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8, generator=g)
    clip = frame.expand(8, -1, -1, -1).clone()  # [T, C, H, W]: one frame 8 times
    torch.manual_seed(0)
    out = ra(clip)
    assert out.shape == clip.shape
    assert len({o.float().mean().item() for o in out}) >= 4  # the same frame, augmented 8 ways
    torch.manual_seed(0)
    expect = torch.stack([ra.op(f) for f in clip])  # one draw per frame, in frame order
    assert torch.equal(out, expect)


def test_randaugment_draws_one_parameter_set_per_clip(tmp_path):
    from tkvr.data.transforms import rand_augment

    ra = rand_augment("clip")
    assert (ra.op.num_ops, ra.op.magnitude) == (2, 9)
    g = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 255, (5, 3, 40, 40), dtype=torch.uint8, generator=g)  # [T, C, H, W], distinct frames
    outs = []
    for seed in range(8):
        torch.manual_seed(seed)
        out = ra(clip)
        for t in range(5):  # each frame alone, from the same RNG state: the same ops and magnitudes
            torch.manual_seed(seed)
            assert torch.equal(ra(clip[t]), out[t]), (seed, t)
        outs.append(out)
    assert sum(not torch.equal(o, clip) for o in outs) >= 6  # it does change clips
    assert len({o.float().mean().item() for o in outs}) >= 5  # with different draws per clip
    # the dataset applies it to training clips, before the crop
    video = write_clip(tmp_path / "a.mp4", frames=16)
    items = []
    for randaug in (None, ra):
        ds = ClipDataset([Sample(str(video), 0)], 4, train_transform(PRE), train=True, decoder="pyav", randaug=randaug)
        torch.manual_seed(3)
        items.append(ds[0]["video"])
    assert items[0].shape == items[1].shape == (4, 3, 32, 32) and not torch.equal(items[0], items[1])
