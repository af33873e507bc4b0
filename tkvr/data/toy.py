"""The toy world: coloured shapes that move across a textured background, written as real videos.

Classes are described in words, `a {colour} {shape} moving {direction}`: 5 colours x 3 shapes x
4 directions = 60 classes. The world is built for the experiments of the paper in miniature:
  - zero-shot: five colour x shape combinations, one per colour (all four directions each, 20
    classes) are held out; `toy@seen` (40 classes) and `toy@unseen` (20) name the two subsets;
  - temporal order: `moving left` / `moving right` (and up / down) of the same shape differ only in
    the order of their frames. A clip's path is a segment [a, b] drawn independently of the
    direction, travelled a -> b or b -> a, so the set of frames has the same distribution for both
    directions and an order-blind model (TAP) cannot separate them;
  - no horizontal flip for this dataset (it would turn `left` into `right`).

Videos are 16 frames of 64x64 H.264 (torchcodec's encoder, PyAV's as the fallback), generated
once, deterministically from a seed, into a cache folder (TKVR_CACHE, default ~/.cache/tkvr) with
the list files a user's dataset would have: labels.csv, train.txt, val.txt, seen.txt, unseen.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230),
           "yellow": (235, 215, 40), "purple": (160, 60, 200)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# One held-out shape per colour: every colour and every shape still appears in seen classes.
HELD_OUT = (("red", "triangle"), ("green", "square"), ("blue", "circle"), ("yellow", "square"), ("purple", "circle"))
VERSION = 2
WORLD = {"size": 64, "frames": 16, "fps": 8, "train_per_class": 8, "val_per_class": 4, "seed": 0}


def class_name(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def triples() -> list[tuple[str, str, str]]:
    """(colour, shape, direction) in class-id order."""
    return [(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def toy_classes() -> list[str]:
    return [class_name(*t) for t in triples()]


def unseen_classes() -> list[str]:
    return [class_name(c, s, d) for c, s in HELD_OUT for d in DIRECTIONS]


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> torch.Tensor:
    """Boolean [size, size] mask of a shape centred at (cx, cy) with half-extent r."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                            torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    if shape == "triangle":  # pointing up, whatever the motion
        return (dy <= r * 0.8) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.55)
    raise ValueError(shape)


def background(size: int, g: torch.Generator) -> torch.Tensor:
    """A grey, low-contrast texture: [3, size, size] float in 0..255."""
    base = 70 + 50 * torch.rand((), generator=g)
    coarse = torch.rand(1, 1, size // 8, size // 8, generator=g) * 30 - 15
    tex = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
    return (base + tex).expand(3, size, size).clone()


def render(colour: str, shape: str, cx: float, cy: float, r: float, bg: torch.Tensor) -> torch.Tensor:
    """One frame: uint8 [3, H, W]."""
    img = bg.clone()
    mask = shape_mask(shape, cx, cy, r, bg.shape[-1])
    img[:, mask] = torch.tensor(COLOURS[colour], dtype=img.dtype)[:, None]
    return img.clamp(0, 255).to(torch.uint8)


def make_clip(colour: str, shape: str, direction: str, g: torch.Generator,
              size: int = 64, frames: int = 16) -> torch.Tensor:
    """uint8 [T, 3, H, W]: the shape travels a segment [a, b] along the direction's axis."""
    r = size * (0.10 + 0.06 * float(torch.rand((), generator=g)))
    lo, hi = r + 1, size - r - 1
    a = lo + (hi - lo) * 0.45 * float(torch.rand((), generator=g))
    b = hi - (hi - lo) * 0.45 * float(torch.rand((), generator=g))  # b - a >= 10% of the range
    across = lo + (hi - lo) * float(torch.rand((), generator=g))
    ddx, ddy = DIRECTIONS[direction]
    start, end = (a, b) if (ddx + ddy) > 0 else (b, a)
    bg = background(size, g)
    out = []
    for t in range(frames):
        p = start + (end - start) * t / (frames - 1)
        cx, cy = (p, across) if ddx else (across, p)
        out.append(render(colour, shape, cx, cy, r, bg))
    return torch.stack(out)


def write_video(frames: torch.Tensor, path: Path, fps: int) -> None:
    """uint8 [T, 3, H, W] -> an H.264 file, through torchcodec or, without FFmpeg libraries, PyAV."""
    from tkvr.data.video import torchcodec_error

    if torchcodec_error() is None:
        from torchcodec.encoders import VideoEncoder

        VideoEncoder(frames, frame_rate=fps).to_file(str(path), codec="libx264", pixel_format="yuv420p", crf=12)
        return
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[-1], frames.shape[-2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(f.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def cache_dir() -> Path:
    return Path(os.environ.get("TKVR_CACHE", Path.home() / ".cache" / "tkvr")).expanduser()


def world_key(world: dict) -> str:
    text = json.dumps({"version": VERSION, **world}, sort_keys=True)
    return f"toy-v{VERSION}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def build_world(folder: Path, world: dict) -> None:
    classes = toy_classes()
    g = torch.Generator().manual_seed(world["seed"])
    (folder / "videos").mkdir(parents=True)
    (folder / "labels.csv").write_text("id,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(classes)))
    unseen = set(unseen_classes())
    (folder / "seen.txt").write_text("".join(c + "\n" for c in classes if c not in unseen))
    (folder / "unseen.txt").write_text("".join(c + "\n" for c in classes if c in unseen))
    for split, per in (("train", world["train_per_class"]), ("val", world["val_per_class"])):
        lines = []
        for y, (colour, shape, direction) in enumerate(triples()):
            for k in range(per):
                rel = f"videos/{split}_{y:02d}_{k:02d}.mp4"
                clip = make_clip(colour, shape, direction, g, world["size"], world["frames"])
                write_video(clip, folder / rel, world["fps"])
                lines.append(f"{rel} {y}\n")
        (folder / f"{split}.txt").write_text("".join(lines))
    (folder / "world.json").write_text(json.dumps({"version": VERSION, **world}, indent=1))


def ensure_world(world: dict | None = None, quiet: bool = False) -> Path:
    """The toy dataset folder, generated on first use (atomically: a temp folder renamed)."""
    world = {**WORLD, **(world or {})}
    root = cache_dir() / world_key(world)
    if (root / "world.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        from tkvr.progress import say

        n = len(toy_classes()) * (world["train_per_class"] + world["val_per_class"])
        say(f"toy world: writing {n} videos to {root} (once)")
    tmp = Path(tempfile.mkdtemp(prefix=".toy-", dir=root.parent))
    try:
        build_world(tmp, world)
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first: theirs is identical
            if not (root / "world.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


TEMPLATES = ["a video of {}."]  # the toy world's prompt


def direction_pair(name: str) -> str:
    """The class that differs only in direction: 'a red circle moving left' -> '... moving right'."""
    head, direction = name.rsplit(" ", 1)
    return f"{head} {dict(left='right', right='left', up='down', down='up')[direction]}"



# ---------------------------------------------------------------- still images for the toy CLIP
SIZES = {"small": (0.10, 0.13), "big": (0.14, 0.18)}  # radius as a fraction of the image side
PLACES = {"on the left": (0.25, 0.5), "on the right": (0.75, 0.5), "up at the top": (0.5, 0.25),
          "down at the bottom": (0.5, 0.75), "in the middle": (0.5, 0.5)}
CAPTION_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.", "{}")


def still(g: torch.Generator, size: int = 64) -> tuple[torch.Tensor, str]:
    """One captioned still image for the toy CLIP: uint8 [3, size, size] and its caption.

    A shape of some colour, size and place on the toy world's background; the caption names them
    ('a photo of a small red circle on the left.'), sometimes leaving size or place out. No motion
    and no word of motion: the video classes are never seen here."""
    def pick(options):
        return options[int(torch.randint(len(options), (), generator=g))]

    colour, shape = pick(list(COLOURS)), pick(SHAPES)
    size_word, place = pick(list(SIZES)), pick(list(PLACES))
    lo, hi = SIZES[size_word]
    r = size * (lo + (hi - lo) * float(torch.rand((), generator=g)))
    px, py = PLACES[place]
    jitter = (torch.rand(2, generator=g) - 0.5) * 0.16 * size
    img = render(colour, shape, px * size + float(jitter[0]), py * size + float(jitter[1]), r, background(size, g))
    words = [colour, shape]
    if float(torch.rand((), generator=g)) < 0.7:
        words.insert(0, size_word)
    desc = " ".join(words)
    if float(torch.rand((), generator=g)) < 0.7:
        desc += " " + place
    return img, pick(CAPTION_TEMPLATES).format(desc)


def pair_accuracy(scores: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> float:
    """Percent of clips scored above their direction pair (left vs right, up vs down of the same
    coloured shape): 50 is chance, and an order-blind model cannot do better."""
    pair = torch.tensor([classes.index(direction_pair(c)) for c in classes])
    rows = torch.arange(len(labels))
    return 100.0 * (scores[rows, labels] > scores[rows, pair[labels]]).float().mean().item()
