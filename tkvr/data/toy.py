"""The toy world: coloured shapes in cluttered scenes, written as real videos.

A miniature of the paper's premise (a pre-trained model's text embeddings of the class names are
coarsely aligned with its visual features; most classes are recognisable from appearance in one
frame, some need time order; one video per class does not define a class):

  - 54 classes. 30 are a coloured shape, `a red circle`, `an orange ring`, recognisable in any
    single frame; 24 are twelve time-reversal pairs, `a teal ring moving left` / `... moving
    right`: a left-mover's clip is a right-mover's clip played backwards (a clip travels a
    horizontal segment [a, b] drawn independently of the direction).
  - Order-blind by construction: each clip shows 8 images, each held for 2 of its 16 frames, so
    every view tkvr takes at 8 frames (training's random frame per segment, the test protocol's
    clips at any offset) sees each image exactly once, and a clip and its reversal give the same
    multiset of frames: an order-blind model (TAP) scores them alike and is at chance on a pair.
    Frames are coded as key frames at a constant quantiser, so decoding keeps that symmetry to
    the last level (a clip and its reversal decode to the same images).
  - Frames that carry order: the camera looks along the scene at a slant (perspective: an object
    at the left edge is 0.5x its size in the middle, at the right edge 1.5x), so where an object
    is shows in its size, which the toy CLIP's embedding carries (it learnt `small` / `big`); a
    pair's object crosses most of the width (at least 60%), so its first and last images differ.
  - Classes are similar where their words are: 8 colours in hue order (red, orange, yellow, green,
    teal, blue, purple, pink; each a neighbour of the next, pink of red) and 6 shapes in three
    families (circle / ring, square / diamond, triangle / cross). Six of the 48 coloured shapes
    are not in the world (DROPPED), to keep 54 classes.
  - Every clip varies: the object's size, start, speed and path, the lighting (level and a
    gradient), the background's tint and texture, 0-4 smaller static distractor shapes of any
    colour, washed out, a bar that occludes part of the scene (40% of clips), sensor noise and
    a per-clip shift of the object's colour. The videos are another domain than the stills
    (`Scene(video=True)`): the camera's colour response (CAMERA), flatter contrast, more noise,
    wider ranges of size, lighting and tint.
  - Zero-shot: 10 of the 30 coloured shapes and 4 of the 12 pairs (18 classes) are held out:
    `toy@seen` (36 classes) and `toy@unseen` (18); every word of an unseen name occurs in seen ones.
  - No horizontal flip for this dataset (it would turn `left` into `right`).

The toy CLIP (examples/pretrain_toy_clip.py) learns the words from captioned stills of the same
kind of scene (`still`): colour, shape, size and place, and `moving left` / `moving right` from a
still that shows a motion trail, as CLIP learns "running" from a pose. The videos show no trail.

Videos are 16 frames of 64x64 H.264 (torchcodec's encoder, PyAV's as the fallback), generated
once, deterministically from a seed, into a cache folder (TKVR_CACHE, default ~/.cache/tkvr) with
the list files a user's dataset would have: labels.csv, train.txt, val.txt, seen.txt, unseen.txt.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from tkvr.base.progress import say
from tkvr.data.video import torchcodec_error

# hue order: each colour's neighbours are the ones beside it (cyclic: pink is next to red)
COLOURS = {
    "red": (215, 45, 40),
    "orange": (240, 135, 30),
    "yellow": (230, 210, 45),
    "green": (55, 175, 60),
    "teal": (30, 160, 150),
    "blue": (45, 80, 220),
    "purple": (140, 65, 200),
    "pink": (235, 115, 175),
}
SHAPES = ("circle", "ring", "square", "diamond", "triangle", "cross")  # families: pairs in this order
MOTIONS = ("left", "right")
# the coloured shapes whose classes are a time-reversal pair instead of a single class: each
# shape twice, each colour once or twice
PAIRED = (
    ("red", "diamond"),
    ("red", "ring"),
    ("orange", "square"),
    ("yellow", "circle"),
    ("yellow", "cross"),
    ("green", "triangle"),
    ("teal", "ring"),
    ("teal", "square"),
    ("blue", "triangle"),
    ("purple", "circle"),
    ("purple", "diamond"),
    ("pink", "cross"),
)
# not in the world (one of each shape): 30 single classes + 12 pairs = 54 classes
DROPPED = (
    ("orange", "diamond"),
    ("green", "ring"),
    ("blue", "square"),
    ("pink", "circle"),
    ("red", "cross"),
    ("teal", "triangle"),
)
# held out for zero-shot: 10 single classes and 4 pairs; every colour and shape stays among the seen
HELD_OUT = (
    ("red", "circle"),
    ("orange", "triangle"),
    ("orange", "cross"),
    ("yellow", "ring"),
    ("green", "diamond"),
    ("teal", "cross"),
    ("blue", "ring"),
    ("blue", "diamond"),
    ("purple", "square"),
    ("pink", "triangle"),
    ("red", "ring"),
    ("yellow", "cross"),
    ("green", "triangle"),
    ("purple", "diamond"),
)
VERSION = 4
CAMERA = torch.tensor([1.3, 1.0, 0.7])  # the videos' white balance (red, green, blue gains)
HOLD = 2  # frames each image of a clip is held for
NEAR, FAR = 1.5, 0.5  # the videos' perspective: size at the right and left edges, x the middle's
WORLD = {"size": 64, "frames": 16, "fps": 8, "train_per_class": 16, "val_per_class": 4, "seed": 0}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def class_name(colour: str, shape: str, motion: str | None = None) -> str:
    return f"{article(colour)} {colour} {shape}" + (f" moving {motion}" if motion else "")


def triples() -> list[tuple[str, str, str | None]]:
    """(colour, shape, motion or None) in class-id order."""
    out = []
    for c in COLOURS:
        for s in SHAPES:
            if (c, s) not in DROPPED:
                out += [(c, s, m) for m in MOTIONS] if (c, s) in PAIRED else [(c, s, None)]
    return out


def toy_classes() -> list[str]:
    return [class_name(*t) for t in triples()]


def unseen_classes() -> list[str]:
    return [class_name(*t) for t in triples() if t[:2] in HELD_OUT]


def foreign(names: list[str]) -> list[str]:
    """The names with a word the toy CLIP never read (it learnt the toy world's classes only:
    colours, shapes, "moving left/right"); its scores for them mean nothing."""
    known = {*COLOURS, *SHAPES, *MOTIONS, "a", "an", "moving"}
    return [n for n in names if set(n.lower().replace(",", " ").split()) - known]


def factors(name: str) -> dict:
    """'a teal ring moving left' -> {'colour': 'teal', 'shape': 'ring', 'motion': 'left'}."""
    words = name.split()
    return {"colour": words[1], "shape": words[2], "motion": words[4] if len(words) > 4 else None}


def neighbours(colour: str) -> tuple[str, str]:
    names = list(COLOURS)
    i = names.index(colour)
    return names[i - 1], names[(i + 1) % len(names)]


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32) + 0.5,
        torch.arange(size, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return xs, ys


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> torch.Tensor:
    """Boolean [size, size] mask of a shape centred at (cx, cy) with half-extent r."""
    xs, ys = _grid(size)
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    if shape == "diamond":
        return dx.abs() + dy.abs() <= r * 1.15
    if shape == "triangle":  # pointing up, whatever the motion
        return (dy <= r * 0.8) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.55)
    if shape == "cross":
        return ((dx.abs() <= r * 0.3) & (dy.abs() <= r)) | ((dy.abs() <= r * 0.3) & (dx.abs() <= r))
    raise ValueError(shape)


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _pick(g: torch.Generator, options):
    options = list(options)
    return options[int(torch.randint(len(options), (), generator=g))]


class Scene:
    """What stays the same through one clip (or one still): background, distractors, occluder,
    lighting, noise level, and the main object's colour and size."""

    def __init__(self, colour: str, shape: str, g: torch.Generator, size: int = 64, video: bool = False):
        self.size, self.shape = size, shape
        xs, ys = _grid(size)
        tint = torch.tensor(COLOURS[_pick(g, COLOURS)], dtype=torch.float32)
        base = 70 + 60 * _u(g)
        coarse = torch.rand(1, 1, size // 8, size // 8, generator=g) * 36 - 18
        tex = torch.nn.functional.interpolate(
            coarse, size=(size, size), mode="bilinear", align_corners=False
        )[0]
        grey = (base + tex).expand(3, size, size)
        # [3, H, W], tinted: faintly in stills, up to a third in videos (rooms, lawns, skies)
        self.bg = grey + (_u(g, 0.0, 0.35) if video else 0.12) * (tint[:, None, None] - grey)
        for _ in range(int(torch.randint(5 if video else 4, (), generator=g))):  # smaller, static, washed out
            c = torch.tensor(COLOURS[_pick(g, COLOURS)], dtype=torch.float32)
            c = c + _u(g, 0.2, 0.6) * (128 - c)
            m = shape_mask(
                _pick(g, SHAPES), _u(g, 4, size - 4), _u(g, 4, size - 4), size * _u(g, 0.05, 0.085), size
            )
            self.bg[:, m] = c[:, None]
        self.occluder = None
        if _u(g) < (0.4 if video else 0.3):
            at, width, value = _u(g, 0.1, 0.9) * size, size * _u(g, 0.1, 0.18), _u(g, 60, 180)
            self.occluder = ((xs if _u(g) < 0.5 else ys) - at).abs() <= width / 2, value
        theta = _u(g, 0, 6.2832)
        ramp = (xs - size / 2) * torch.cos(torch.tensor(theta)) + (ys - size / 2) * torch.sin(
            torch.tensor(theta)
        )
        self.light = _u(g, *((0.55, 1.35) if video else (0.7, 1.25))) * (
            1 + _u(g, 0, 0.25) * ramp / (size / 2)
        )
        self.noise = _u(g, 0, 8)
        # a colour name covers a range of hues: +-18 per channel
        self.rgb = (
            torch.tensor(COLOURS[colour], dtype=torch.float32) + (torch.rand(3, generator=g) * 2 - 1) * 18
        )
        # a video's size is the one in the middle of the width; perspective scales it (`radius`)
        self.r = size * _u(g, *((0.09, 0.17) if video else (0.10, 0.19)))
        self.video = video
        self.cast, self.contrast = torch.ones(3, 1, 1), 1.0
        if video:
            # videos are another domain than the stills the toy CLIP saw (as Kinetics is for CLIP's
            # web photos): the video camera's own response, the same in every clip (warm, flat),
            # give or take 20% per clip (the grey background shows it); a shift that examples teach
            # and names do not
            self.cast = CAMERA.view(3, 1, 1) * (1 + (torch.rand(3, 1, 1, generator=g) * 0.4 - 0.2))
            self.contrast = _u(g, 0.7, 0.9)
            self.noise = _u(g, 0, 12)

    def radius(self, cx: float) -> float:
        """The object's half-extent at x = cx: in a video, FAR x its size at the left edge, NEAR x
        at the right (the camera looks along the scene at a slant); in a still, its size."""
        if not self.video:
            return self.r
        return self.r * (FAR + (NEAR - FAR) * cx / self.size)

    def bounds(self) -> tuple[float, float]:
        """Where the object's centre may be, its largest extent inside the frame."""
        r = self.r * (NEAR if self.video else 1.0)
        return r + 1, self.size - r - 1

    def frame(
        self, cx: float, cy: float, g: torch.Generator, trail: tuple[float, float] | None = None
    ) -> torch.Tensor:
        """uint8 [3, H, W] with the object at (cx, cy); `trail` (dx, dy) draws fading copies behind it."""
        img = self.bg.clone()
        if trail is not None:
            for k, alpha in ((3, 0.15), (2, 0.3), (1, 0.45)):
                m = shape_mask(self.shape, cx - k * trail[0], cy - k * trail[1], self.r, self.size)
                img[:, m] = (1 - alpha) * img[:, m] + alpha * self.rgb[:, None]
        img[:, shape_mask(self.shape, cx, cy, self.radius(cx), self.size)] = self.rgb[:, None]
        if self.occluder is not None:
            img[:, self.occluder[0]] = self.occluder[1]
        img = img * self.light * self.cast
        if self.contrast != 1.0:
            img = img.mean() + self.contrast * (img - img.mean())
        img = img + self.noise * torch.randn(img.shape, generator=g)
        return img.clamp(0, 255).to(torch.uint8)


def make_clip(
    colour: str, shape: str, motion: str | None, g: torch.Generator, size: int = 64, frames: int = 16
) -> torch.Tensor:
    """uint8 [T, 3, H, W]: frames // HOLD images, each held for HOLD frames. A single class's object
    wanders (random start, speed and heading, bouncing off the edges); a pair's crosses a
    horizontal segment [a, b] of at least 60% of the width, a -> b for `right` and the same images
    in reverse for `left`."""
    sc = Scene(colour, shape, g, size, video=True)
    lo, hi = sc.bounds()
    steps = frames // HOLD
    if motion is None:
        x, y = _u(g, lo, hi), _u(g, lo, hi)
        speed, heading = HOLD * _u(g, 0.3, 2.0), _u(g, 0, 6.2832)
        vx, vy = (
            speed * float(torch.cos(torch.tensor(heading))),
            speed * float(torch.sin(torch.tensor(heading))),
        )
        path = []
        for _ in range(steps):
            path.append((x, y))
            x, y = x + vx, y + vy
            if not lo <= x <= hi:
                vx, x = -vx, min(max(x, lo), hi)
            if not lo <= y <= hi:
                vy, y = -vy, min(max(y, lo), hi)
    else:
        a = lo + (hi - lo) * 0.2 * _u(g)
        b = hi - (hi - lo) * 0.2 * _u(g)  # b - a >= 60% of the range
        across = _u(g, lo, hi)
        path = [(a + (b - a) * t / (steps - 1), across) for t in range(steps)]
    images = torch.stack([sc.frame(x, y, g) for x, y in path])  # [T / HOLD, 3, H, W]
    images = images.flip(0) if motion == "left" else images
    return images.repeat_interleave(HOLD, 0)


# every frame a key frame at one quantiser: a frame decodes to the same image wherever it stands,
# so a clip written backwards decodes to the same images backwards (rate control at a constant
# quality would code a frame by what came before it)
INTRA = {"g": 1, "qp": 12}


def write_video(frames: torch.Tensor, path: Path, fps: int, intra: bool = False) -> None:
    """uint8 [T, 3, H, W] -> an H.264 file, through torchcodec or, without FFmpeg libraries, PyAV;
    intra: every frame a key frame (INTRA), as the toy world's; else at a constant quality."""
    options = dict(INTRA) if intra else {"crf": 12}
    if torchcodec_error() is None:
        from torchcodec.encoders import (
            VideoEncoder,  # deferred: loads FFmpeg's libraries, only when a video is read or written
        )

        VideoEncoder(frames, frame_rate=fps).to_file(
            str(path), codec="libx264", pixel_format="yuv420p", extra_options=options
        )
        return
    import av  # deferred: PyAV, the fallback decoder, loads only when a file needs it

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[-1], frames.shape[-2]
        stream.pix_fmt = "yuv420p"
        stream.options = {k: str(v) for k, v in options.items()}
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


def videos(world: dict) -> dict[str, list[tuple[str, int]]]:
    """split -> [(path relative to the world's folder, label)], in the order they are drawn."""
    return {
        split: [(f"videos/{split}_{y:02d}_{k:02d}.mp4", y) for y in range(len(triples())) for k in range(per)]
        for split, per in (("train", world["train_per_class"]), ("val", world["val_per_class"]))
    }


def list_files(world: dict) -> dict[str, str]:
    """The world's list files by name, as text: what a dataset folder of the user's would hold."""
    classes, unseen = toy_classes(), set(unseen_classes())
    return {
        "labels.csv": "id,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(classes)),
        "seen.txt": "".join(c + "\n" for c in classes if c not in unseen),
        "unseen.txt": "".join(c + "\n" for c in classes if c in unseen),
        **{
            f"{split}.txt": "".join(f"{rel} {y}\n" for rel, y in rows)
            for split, rows in videos(world).items()
        },
    }


def build_world(folder: Path, world: dict) -> None:
    g = torch.Generator().manual_seed(world["seed"])
    (folder / "videos").mkdir(parents=True)
    for name, text in list_files(world).items():
        (folder / name).write_text(text)
    kinds = triples()
    for rows in videos(world).values():
        for rel, y in rows:
            colour, shape, motion = kinds[y]
            clip = make_clip(colour, shape, motion, g, world["size"], world["frames"])
            write_video(clip, folder / rel, world["fps"], intra=True)
    (folder / "world.json").write_text(json.dumps({"version": VERSION, **world}, indent=1))


def world_root(world: dict | None = None) -> Path:
    """Where the toy world is (or will be) written."""
    return cache_dir() / world_key({**WORLD, **(world or {})})


def ensure_world(world: dict | None = None, quiet: bool = False) -> Path:
    """The toy dataset folder, generated on first use (atomically: a temp folder renamed). Two
    processes that need it at once: the second waits for the first's and uses it (writing the
    1080 videos takes about 40 s on 2 cores; twice at once would take twice as long)."""
    world = {**WORLD, **(world or {})}
    root = world_root(world)
    if (root / "world.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also by a killed process
        if (root / "world.json").is_file():  # written while this process waited
            return root
        return _write_world(root, world, quiet)


def _write_world(root: Path, world: dict, quiet: bool) -> Path:
    if not quiet:
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


def direction_pair(name: str) -> str | None:
    """The class that differs only in time order: '... moving left' -> '... moving right'; None
    for a single class."""
    f = factors(name)
    if f["motion"] is None:
        return None
    return class_name(f["colour"], f["shape"], "right" if f["motion"] == "left" else "left")


# ---------------------------------------------------------------- still images for the toy CLIP
PLACES = ("at the top", "in the middle", "at the bottom")  # by thirds of the height
CAPTION_TEMPLATES = ("a photo of {}.", "a picture of {}.", "an image of {}.", "a video of {}.", "{}.", "{}")


def still(g: torch.Generator, size: int = 64) -> tuple[torch.Tensor, str, dict]:
    """One captioned still for the toy CLIP: uint8 [3, size, size], its caption and what it shows.

    A scene of the toy world's kind (clutter, lighting, noise, occlusion) with one main object of
    any colour and shape; a quarter of them show a motion trail, captioned `moving left` or
    `moving right` (the trail lies behind the object). Captions are noisy and partial, as web
    captions are: the colour is sometimes a hue neighbour or left out, the shape sometimes left
    out, size, place and one distractor sometimes named. No still is a frame of a toy video."""
    colour, shape = _pick(g, COLOURS), _pick(g, SHAPES)
    sc = Scene(colour, shape, g, size)
    lo, hi = sc.r + 1, size - sc.r - 1
    cx, cy = _u(g, lo, hi), _u(g, lo, hi)
    motion = _pick(g, MOTIONS) if _u(g) < 0.25 else None
    step = sc.r * 0.7 * (1 if motion == "right" else -1)
    img = sc.frame(cx, cy, g, trail=(step, 0.0) if motion else None)
    said_colour = colour
    roll = _u(g)
    if roll < 0.12:
        said_colour = _pick(g, neighbours(colour))  # a careless caption
    elif roll < 0.27:
        said_colour = None
    said_shape = shape if said_colour is None or _u(g) >= 0.15 else "shape"
    words = [w for w in (said_colour, said_shape) if w]
    if _u(g) < 0.4:
        words.insert(0, "small" if sc.r < size * 0.145 else "big")
    desc = f"{article(words[0])} {' '.join(words)}"
    if motion and _u(g) < 0.85:
        desc += f" moving {motion}"
    if _u(g) < 0.25:
        desc += " " + PLACES[min(int(3 * cy / size), 2)]
    meta = {"colour": colour, "shape": shape, "motion": motion, "said_colour": said_colour}
    return img, _pick(g, CAPTION_TEMPLATES).format(desc), meta


def pair_accuracy(scores: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> float:
    """Percent of the paired classes' clips scored above their time-reversed twin ('moving left'
    vs 'moving right' of the same coloured shape): 50 is chance, and an order-blind model cannot
    do better. Clips of single classes are not counted."""
    twin = [direction_pair(c) for c in classes]
    pair = torch.tensor([classes.index(t) if t in classes else -1 for t in twin])
    keep = pair[labels] >= 0
    if not keep.any():
        return float("nan")
    rows = torch.arange(len(labels))[keep]
    lab = labels[keep]
    return 100.0 * (scores[rows, lab] > scores[rows, pair[lab]]).float().mean().item()


def factor_accuracy(scores: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Percent of clips whose top class has the right colour, the right shape, both; and the
    time-order pair accuracy of the paired classes' clips (`pair_accuracy`)."""
    pred = scores.argmax(1).tolist()
    f = [factors(n) for n in classes]
    out = {}
    for name, keys in (
        ("colour", ("colour",)),
        ("shape", ("shape",)),
        ("colour x shape", ("colour", "shape")),
    ):
        hit = [all(f[p][k] == f[y][k] for k in keys) for p, y in zip(pred, labels.tolist())]
        out[name] = 100.0 * sum(hit) / max(len(hit), 1)
    out["time order"] = pair_accuracy(scores, labels, classes)
    return out
