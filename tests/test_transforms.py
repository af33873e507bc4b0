"""tkvr.data.transforms: train, eval and multi-crop transforms, RandAugment per frame or per clip."""

import torch
from conftest import PRE, write_clip

from tkvr.data.loader import ClipDataset, Training
from tkvr.data.specs import Sample
from tkvr.data.transforms import EvalTransform, rand_augment, train_transform
from tkvr.data.video import Reading


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
    clip = torch.randint(
        0, 255, (5, 3, 40, 40), dtype=torch.uint8, generator=g
    )  # [T, C, H, W], distinct frames
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
        ds = ClipDataset([Sample(str(video), 0)], 4, train_transform(PRE), Reading("pyav"), Training(randaug=randaug))
        torch.manual_seed(3)
        items.append(ds[0]["video"])
    assert items[0].shape == items[1].shape == (4, 3, 32, 32) and not torch.equal(items[0], items[1])


# ---- the released test protocol (Text4Vis 238c07f, test.py and datasets/transforms.py)
def released_boxes(h, w, size, crops):
    """The released crops of a frame already scaled, written out: CenterCrop for one (torchvision:
    round((h - size) / 2)); GroupFullResSample for three: w_step = (w - size) // 4, h_step = (h -
    size) // 4, lefts 0, 4 w_step, 2 w_step at top 2 h_step; here in the order of their offset."""
    if crops == 1:
        return [(int(round((h - size) / 2.0)), int(round((w - size) / 2.0)))]
    ws, hs = (w - size) // 4, (h - size) // 4
    return sorted([(2 * hs, 0), (2 * hs, 4 * ws), (2 * hs, 2 * ws)], key=lambda b: b[1])


def test_crop_offsets_of_common_frame_shapes():
    from tkvr.data.transforms import crop_boxes, scaled

    # (frame h, w) -> scaled to a 256 short side -> (top, left) of the three 224 crops
    cases = {
        (240, 320): ((256, 341), [(16, 0), (16, 58), (16, 116)]),  # UCF-101
        (256, 340): ((256, 340), [(16, 0), (16, 58), (16, 116)]),  # Kinetics as distributed
        (720, 1280): ((256, 455), [(16, 0), (16, 114), (16, 228)]),  # 16:9
        (320, 240): ((341, 256), [(58, 0), (58, 16), (58, 32)]),  # portrait: along the width still
    }
    for (h, w), (shape, three) in cases.items():
        assert scaled(h, w, 256) == shape
        assert crop_boxes(*shape, 224, 3) == three == released_boxes(*shape, 224, 3)
        assert crop_boxes(*shape, 224, 1) == released_boxes(*shape, 224, 1)
    assert crop_boxes(256, 341, 224, 1) == [(16, 58)]  # the centre: (341 - 224) / 2 = 58.5 rounds to 58


def test_eval_views_are_the_released_crops_of_a_bicubic_resize():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    pre = {"size": 224, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    torch.manual_seed(0)
    for h, w in ((240, 320), (720, 1280), (320, 240)):
        clip = torch.randint(0, 255, (2, 3, h, w), dtype=torch.uint8)
        big = TF.resize(clip, [256], interpolation=InterpolationMode.BICUBIC, antialias=True)
        for crops in (1, 3):
            got = EvalTransform(pre, crops).views(clip)  # [S, T, 3, 224, 224] uint8
            want = [
                big[..., t : t + 224, left : left + 224]
                for t, left in released_boxes(*big.shape[-2:], 224, crops)
            ]
            assert got.dtype == torch.uint8 and torch.equal(got, torch.stack(want))
        bilinear = TF.resize(clip, [256], antialias=True)
        assert not torch.equal(big, bilinear)  # the interpolation is the released one, not the default


def test_bicubic_resize_within_2_levels_of_pil_on_real_frames():
    import numpy as np
    from conftest import realdata
    from PIL import Image

    from tkvr.data.video import open_reader

    folder = realdata("videos")
    pre = {"size": 224, "mean": (0,) * 3, "std": (1,) * 3}
    checked = 0
    for name in (
        "ucf101_ApplyEyeMakeup_mmaction2_test.avi",
        "ntu60_S001C001P001R001A001_rgb.avi",
        "k400_flipping_a_pancake.mkv",
        "bbb_432_433_vp8.webm",
    ):
        r = open_reader(str(folder / name), "pyav")
        frames = r.read([0, len(r) // 2])
        r.close()
        for f in frames:
            img = Image.fromarray(f.permute(1, 2, 0).numpy())
            w, h = img.size
            size = (int(256 * w / h), 256) if w >= h else (256, int(256 * h / w))
            pil = np.asarray(img.resize(size, Image.BICUBIC)).astype(int)  # the released GroupScale
            for crops in (1, 3):  # GroupCenterCrop, GroupFullResSample: the released crops of PIL's resize
                views = EvalTransform(pre, crops).views(f[None])[:, 0].permute(0, 2, 3, 1).numpy().astype(int)
                for view, (top, left) in zip(views, released_boxes(pil.shape[0], pil.shape[1], 224, crops)):
                    diff = np.abs(view - pil[top : top + 224, left : left + 224])
                    assert diff.max() <= 2 and diff.mean() < 0.05, (name, crops, diff.max(), diff.mean())
                    checked += 1
    assert checked == 8 * 4


def test_train_transform_scales_the_short_side_first():
    """The released order (utils/Augmentation.py at 238c07f): GroupScale to 256 (bicubic), then the
    random sized crop; a crop of the whole frame therefore sees the 256-px frame."""
    from torchvision.transforms import InterpolationMode, v2

    pre = {"size": 224, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    first = train_transform(pre).transforms[0]
    assert isinstance(first, v2.Resize) and first.size == [256]
    assert first.interpolation == InterpolationMode.BICUBIC
    assert train_transform(PRE).transforms[0].size == [32]  # other input sizes: the input size
