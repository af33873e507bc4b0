"""tkvr.data.transforms: train, eval and multi-crop transforms, RandAugment per frame or per clip."""
import torch
from conftest import PRE, write_clip

from tkvr.data.loader import ClipDataset
from tkvr.data.specs import Sample
from tkvr.data.transforms import EvalTransform, rand_augment, train_transform


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


def test_randaugment_per_frame_as_released(tmp_path):
    """--randaugment frame (the released GroupTransform): every frame draws its own ops, so one
    clip's frames differ in what was done to them; off builds nothing."""
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
