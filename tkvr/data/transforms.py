"""Clip transforms on uint8 [T, C, H, W] with torchvision.transforms.v2.

v2 treats the leading T as a batch dimension, so one draw of random parameters (crop box, flip)
applies to every frame of a clip: the motion inside the clip is preserved.

  train  the released code's order (utils/Augmentation.py at 238c07f): the short side to the
         released scale (256 for 224-px input, the input size otherwise) with bicubic (GroupScale),
         then a random resized crop (area 0.08-1 of the frame by default, aspect 3/4-4/3, resized
         bilinear as GroupRandomSizedCrop does) or multi-scale crop (TSN's corner and centre crops
         at scales 1, .875, .75, .66 of the short side, bilinear), horizontal flip unless the
         dataset forbids it (classes that name a direction), grayscale with probability 0.2, then
         to float and normalise. RandAugment, when on, comes first, on the frames as read (the
         released randAugment inserts it before GroupScale).
  eval   the released test.py at 238c07f: the short side to the model's size x `test_scale` (by
         default the release's rule: 256 for 224-px input, the input size otherwise) with bicubic,
         then the centre crop (S = 1) or the released three crops (S = 3, `crop_boxes`),
         -> [S, T, C, H, W].
Size, mean and std come from the model's preprocessing config.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from tkvr.data.settings import CROPS

BICUBIC = InterpolationMode.BICUBIC


class MultiScaleCrop(torch.nn.Module):
    """TSN's multi-scale crop: crop w, h each a random scale of the short side, at one of 5 fixed
    positions (corners, centre), then resize to `size`."""

    def __init__(self, size: int, scales=(1.0, 0.875, 0.75, 0.66)):
        super().__init__()
        self.size = size
        self.scales = scales

    def params(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop, from torch's RNG (seeded per worker)."""
        base = min(h, w)
        pick = torch.randint(len(self.scales), (2,)).tolist()
        ch, cw = int(base * self.scales[pick[0]]), int(base * self.scales[pick[1]])
        spots = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
        top, left = spots[int(torch.randint(len(spots), ()))]
        return top, left, ch, cw

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, C, H, W]
        top, left, ch, cw = self.params(*x.shape[-2:])
        return TF.resized_crop(x, top, left, ch, cw, [self.size, self.size], antialias=True)


class RandAugmentClip(torch.nn.Module):
    """--randaugment frame|clip: N = 2 ops at magnitude 9 (of 30), the paper-era setting (the log
    exps/k400/ViT-B/16/f8/log.txt at 092ad0a; train.py at 238c07f; off at d9a6b53). frame: each
    frame draws its own ops (the released GroupTransform, utils/Augmentation.py at 238c07f, applies
    RandAugment to every frame on its own); clip: one draw for all the frames, so the motion is
    kept. On uint8 [T, C, H, W]; v2 draws once per call, so `frame` calls it per frame."""

    def __init__(self, per: str = "frame"):
        super().__init__()
        self.per = per
        self.op = v2.RandAugment(num_ops=2, magnitude=9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per == "clip":
            return self.op(x)
        return torch.stack([self.op(f) for f in x])


def rand_augment(per: str) -> RandAugmentClip | None:
    """The RandAugment of a resolved --randaugment value (None when off)."""
    return None if per == "off" else RandAugmentClip(per)


def input_size(preprocess: dict) -> int:
    s = preprocess["size"]
    return int(s[0] if isinstance(s, (tuple, list)) else s)


def released_scale(size: int) -> float:
    """--test-scale unset: the released test.py's rule (whwu95/Text4Vis test.py at 238c07f,
    `scale_size = 256 if input_size == 224 else input_size`): the short side goes to 256 for
    224-px input and to the input size otherwise (336 for ViT-L/14@336px, not 384)."""
    return 256 / 224 if size == 224 else 1.0


def short_side(size: int, scale: float | None) -> int:
    """Eval frames' short side before the crops: size x --test-scale, or the released rule."""
    return round(size * (scale if scale is not None else released_scale(size)))


def scaled(h: int, w: int, short: int) -> tuple[int, int]:
    """(h, w) after resizing the short side to `short`, as torchvision computes it (the long side
    cut to an integer): 240x320 -> 256 gives 256x341."""
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def train_transform(
    preprocess: dict, crop: str = "rrc", flip: bool = True, area: float = 0.08, gray: float = 0.2
):
    """crop: one of --train-crop's choices (tkvr.data.settings.CROPS); area: the smallest crop area of
    rrc; gray: the probability of grayscale."""
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r}: one of {CROPS}")
    size = input_size(preprocess)
    steps = [
        v2.Resize(short_side(size, None), interpolation=BICUBIC, antialias=True),  # GroupScale, as released
        v2.RandomResizedCrop(size, scale=(area, 1.0), antialias=True)
        if crop == "rrc"
        else MultiScaleCrop(size),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if gray > 0:
        steps.append(v2.RandomGrayscale(gray))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocess["mean"], preprocess["std"])]
    return v2.Compose(steps)


class ClipAugment:
    """The train augmentation in two halves, for running it on the accelerator (--augment device):
    `draw(h, w)` takes a clip's random parameters on the CPU, in the DataLoader worker, from
    torch's RNG in the same order as `train_transform` (so seeding and resuming are unchanged);
    `apply(x, params)` crops, resizes, flips and normalises uint8 frames [T, C, H, W] on whatever
    device they are, -> float [T, C, size, size]. Clips leave the CPU as uint8 at their stored size.
    """

    def __init__(
        self, preprocess: dict, crop: str = "rrc", flip: bool = True, area: float = 0.08, gray: float = 0.2
    ):
        if crop not in CROPS:
            raise ValueError(f"crop {crop!r}: one of {CROPS}")
        self.size, self.flip, self.gray = input_size(preprocess), flip, gray
        self.short = short_side(self.size, None)
        self.mean, self.std = tuple(preprocess["mean"]), tuple(preprocess["std"])
        self.rrc = (
            v2.RandomResizedCrop(self.size, scale=(area, 1.0), antialias=True) if crop == "rrc" else None
        )
        self.msc = MultiScaleCrop(self.size) if crop == "multiscale" else None

    def draw(self, h: int, w: int) -> torch.Tensor:
        """[top, left, height, width, flip, gray] as a long tensor (it travels with the batch), the
        box on the frame as `apply` first resizes it (short side to the released scale)."""
        h, w = scaled(h, w, self.short)
        if self.rrc is not None:
            p = self.rrc.make_params([torch.empty(1, 1, h, w, dtype=torch.uint8)])
            box = [p["top"], p["left"], p["height"], p["width"]]
        else:
            box = list(self.msc.params(h, w))
        flip = self.flip and bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip's draw
        gray = self.gray > 0 and bool(torch.rand(1) < self.gray)  # v2.RandomGrayscale's draw
        return torch.tensor(box + [int(flip), int(gray)])

    def apply(self, x: torch.Tensor, params) -> torch.Tensor:
        top, left, h, w, flip, gray = (int(v) for v in params)
        x = TF.resize(x, [self.short], interpolation=BICUBIC, antialias=True)  # as train_transform
        x = TF.resized_crop(
            x, top, left, h, w, [self.size, self.size], antialias=True
        )  # uint8, as on the CPU
        if flip:
            x = x.flip(-1)
        if gray:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (TF.to_dtype(x, torch.float32, scale=True) - mean) / std


def crop_boxes(h: int, w: int, size: int, crops: int) -> list[tuple[int, int]]:
    """(top, left) of each crop of a frame resized to h x w, in the order of their offset.

    crops = 1: the centre, as torchvision's CenterCrop (round((h - size) / 2), likewise for w).
    crops = 3: the released GroupFullResSample (datasets/transforms.py at 238c07f): w_step =
    (w - size) // 4, h_step = (h - size) // 4, left at 0, 2 w_step and 4 w_step, all at top 2 h_step:
    along the width even on portrait frames. 320x240 -> 256 short side -> 341x256: lefts 0, 58, 116,
    top 16 (the last crop ends 1 px before the right edge)."""
    if crops == 1:
        return [(int(round((h - size) / 2.0)), int(round((w - size) / 2.0)))]
    w_step, h_step = (w - size) // 4, (h - size) // 4
    return [(2 * h_step, k * w_step) for k in (0, 2, 4)]


class EvalTransform(torch.nn.Module):
    """uint8 [T, C, H, W] -> float [S, T, C, size, size]: the released test transforms (test.py at
    238c07f): the short side to the test scale with PIL-style bicubic (GroupScale passes
    Image.BICUBIC; antialiased bicubic on uint8 comes within 2 levels of PIL's), then the centre crop
    or the three crops of `crop_boxes`, then to float and normalise. `views` is the uint8 half:
    the pixels the model sees before normalisation (what `tkvr check --save-views` writes)."""

    def __init__(self, preprocess: dict, crops: int = 1, scale: float | None = None):
        super().__init__()
        self.size = input_size(preprocess)
        self.short = short_side(self.size, scale)  # 256 for 224 crops, 336 for 336, as released
        self.crops = crops
        self.norm = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocess["mean"], preprocess["std"])]
        )

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [T, C, H, W] -> uint8 [S, T, C, size, size]."""
        x = TF.resize(x, [self.short], interpolation=BICUBIC, antialias=True)  # short side -> test scale
        s = self.size
        boxes = crop_boxes(*x.shape[-2:], s, self.crops)
        return torch.stack([TF.crop(x, top, left, s, s) for top, left in boxes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.views(x))  # [S, T, C, H, W], all views in one pass
