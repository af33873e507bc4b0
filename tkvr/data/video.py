"""Reading frames: video files (torchcodec, PyAV fallback), JPEG frame folders, still images.

Every reader returns uint8 [T, 3, H, W] for the requested frame indices, in the requested order
(indices may repeat). Frame counts come from the stream's content, not its header: headers lie
(PyAV's `stream.frames` reads 0, -1 or garbage on real WebM/MKV/MP4 files; AVIs can claim a frame
they do not hold), so torchcodec runs in its `exact` seek mode (one scan of the packets, no
decoding) and PyAV counts the packets the same way.

Decoders:
  torchcodec  one batched `get_frames_at` call for all indices of a clip: seeks to the nearest
              key frame before each run of frames and decodes only what it needs.
  pyav        the fallback when torchcodec cannot load FFmpeg's shared libraries (PyAV's wheel
              carries its own FFmpeg). Seek-based as well: it seeks to the key frame before each
              wanted frame that is not reachable by decoding forward, never decodes the whole video.
              AVI is the exception: its timestamps are made up by the container, so frames are
              counted in output order from the start, up to the last wanted one.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import torch

from tkvr.errors import TkvrError

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
DECODERS = ("auto", "torchcodec", "pyav")
REORDER = 16  # frames decoded past a wanted one before giving up on it

log = logging.getLogger("tkvr")


class UnreadableVideo(Exception):
    """A file that exists but cannot be decoded (truncated, empty, not a video)."""


def kind_of(path: str) -> str:
    """'video', 'image' or 'frames' (a folder of JPEG frames)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    return "frames" if os.path.isdir(path) else "video"


@lru_cache(maxsize=1)
def torchcodec_error() -> str | None:
    """None when torchcodec can decode here, else why not (FFmpeg libraries missing, ...)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - loads FFmpeg's libraries
    except Exception as e:  # noqa: BLE001 - ImportError, OSError, RuntimeError all mean 'cannot'
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"
    return None


_announced = False


def pick_decoder(name: str = "auto", quiet: bool = False) -> str:
    """Resolve --decoder; `auto` says once which one it uses."""
    global _announced
    if name not in DECODERS:
        raise TkvrError(f"--decoder {name!r} is not known: choose one of {', '.join(DECODERS)}")
    if name == "torchcodec":
        err = torchcodec_error()
        if err:
            raise TkvrError(f"--decoder torchcodec cannot load FFmpeg ({err}); install FFmpeg's shared "
                            "libraries (apt-get install ffmpeg) or use --decoder pyav")
        return name
    if name == "pyav":
        return name
    chosen = "torchcodec" if torchcodec_error() is None else "pyav"
    if not _announced and not quiet:
        from tkvr.progress import say

        why = "" if chosen == "torchcodec" else f" (torchcodec unavailable: {torchcodec_error()})"
        say(f"decoder: {chosen}{why}")
        _announced = True
    return chosen


# ---------------------------------------------------------------- torchcodec
def _tc_decoder(path: str, device: str = "cpu"):
    from torchcodec.decoders import VideoDecoder

    try:
        # FFmpeg's own threads help a lone reader; DataLoader workers already fill the cores.
        from torch.utils.data import get_worker_info

        threads = 1 if get_worker_info() is not None else 0
        return VideoDecoder(path, seek_mode="exact", device=device, num_ffmpeg_threads=threads)
    except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError for bad files
        raise UnreadableVideo(f"{path}: {_short(e)}") from None


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


# ---------------------------------------------------------------- PyAV
def _av_open(path: str):
    import av

    try:
        container = av.open(path)
    except Exception as e:  # noqa: BLE001 - av.error.* for bad files
        raise UnreadableVideo(f"{path}: {_short(e)}") from None
    if not container.streams.video:
        container.close()
        raise UnreadableVideo(f"{path}: no video stream")
    container.streams.video[0].thread_type = "AUTO"
    return container


def _av_frame_pts(container) -> list[int]:
    """Presentation timestamps of every frame, from the packets (no decoding), in display order."""
    stream = container.streams.video[0]
    pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
    container.seek(0)
    return pts


def _av_read(container, pts: list[int], indices: list[int]) -> list[torch.Tensor]:
    """Decode the frames at `indices` (positions in display order), seeking where it pays."""
    stream = container.streams.video[0]
    wanted = set(indices)
    pos = {p: i for i, p in enumerate(pts)}
    got: dict[int, torch.Tensor] = {}

    def decode_until(idx, it):
        last = -1
        for frame in it:
            i = pos.get(frame.pts if frame.pts is not None else frame.dts)
            if i is None:
                continue
            last = i
            if i in wanted and i not in got:
                got[i] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)  # [3, H, W]
            # Output order can differ from timestamp order (B-frames in AVI): go a little past idx.
            if idx in got or i > idx + REORDER:
                break
        return last

    it, last = None, -1
    for idx in sorted(wanted):
        if idx in got:
            continue
        # Seek when the frame is behind us or far ahead (decoding ~2 GOPs forward costs less).
        if it is None or idx <= last - REORDER or idx - last > 48:
            container.seek(pts[idx], stream=stream, backward=True, any_frame=False)
            it = container.decode(stream)
        last = decode_until(idx, it)
        if idx not in got:  # a seek that landed past the frame: decode from the start once
            container.seek(pts[0], stream=stream, backward=True, any_frame=False)
            it = container.decode(stream)
            last = decode_until(idx, it)
        if idx not in got:
            raise UnreadableVideo(f"frame {idx} could not be decoded")
    return [got[i] for i in indices]


def _av_read_in_order(container, indices: list[int]) -> list[torch.Tensor]:
    """Decode from the start, counting frames in output (display) order, up to the last index."""
    stream = container.streams.video[0]
    wanted, stop = set(indices), max(indices)
    got: dict[int, torch.Tensor] = {}
    container.seek(0)
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            got[i] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)  # [3, H, W]
        if i >= stop:
            break
    missing = wanted - set(got)
    if missing:
        raise UnreadableVideo(f"frames {sorted(missing)[:4]} could not be decoded")
    return [got[i] for i in indices]


# ---------------------------------------------------------------- public API
class VideoFile:
    """An open video file: `len()` frames (counted from content), `read(indices)` -> [T, 3, H, W] uint8."""

    def __init__(self, path: str, decoder: str = "torchcodec", device: str = "cpu"):
        self.path = str(path)
        self.decoder = decoder
        # AVI has no presentation timestamps: the container invents them, and with B-frames both
        # decoders map an index to the wrong frame (off by 1-2, seen on real UCF-101 and NTU clips).
        # There, frames are read in output (display) order from the start, which both get right.
        self._by_order = Path(self.path).suffix.lower() == ".avi"
        if not os.path.isfile(self.path):
            raise FileNotFoundError(self.path)
        if os.path.getsize(self.path) == 0:
            raise UnreadableVideo(f"{self.path}: empty file (0 bytes)")
        if decoder == "torchcodec":
            self._dec = _tc_decoder(self.path, device)
            self.num_frames = int(self._dec.metadata.num_frames or 0)
        else:
            self._dec = _av_open(self.path)
            try:
                self._pts = _av_frame_pts(self._dec)
            except Exception as e:  # noqa: BLE001
                self.close()
                raise UnreadableVideo(f"{self.path}: {_short(e)}") from None
            self.num_frames = len(self._pts)
        if self.num_frames <= 0:
            self.close()
            raise UnreadableVideo(f"{self.path}: no frames")

    def __len__(self) -> int:
        return self.num_frames

    def read(self, indices) -> torch.Tensor:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:4]} outside 0..{self.num_frames - 1}")
        try:
            if self.decoder == "torchcodec":
                if self._by_order:
                    return self._tc_in_order(indices)
                try:
                    return self._dec.get_frames_at(indices).data.cpu()  # [T, 3, H, W] uint8
                except RuntimeError:
                    return self._read_each(indices)
            if self._by_order:
                return torch.stack(_av_read_in_order(self._dec, indices))
            return torch.stack(_av_read(self._dec, self._pts, indices))
        except UnreadableVideo:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt stream fails mid-decode
            raise UnreadableVideo(f"{self.path}: {_short(e)}") from None

    def _tc_in_order(self, indices: list[int], chunk: int = 16) -> torch.Tensor:
        """torchcodec, consecutive chunks from frame 0 (it then decodes forward without seeking)."""
        wanted, got = set(indices), {}
        self._dec = _tc_decoder(self.path)  # a fresh decoder starts at frame 0
        for start in range(0, max(indices) + 1, chunk):
            run = list(range(start, min(start + chunk, max(indices) + 1)))
            try:
                frames = self._dec.get_frames_at(run).data.cpu()
            except RuntimeError:
                frames = self._read_each(run)
            for k, i in enumerate(run):
                if i in wanted:
                    got[i] = frames[k]
        return torch.stack([got[i] for i in indices])

    def _read_each(self, indices: list[int]) -> torch.Tensor:
        """Slow path after a failed batch: frames one by one; a frame the stream cannot deliver is
        replaced by the nearest earlier one that it can. In AVIs with B-frames the container makes
        timestamps up, and a frame counted from the packets can be unreachable by timestamp (seen
        on real UCF-101 and NTU clips: one frame near the end)."""
        got: dict[int, torch.Tensor] = {}
        for i in sorted(set(indices)):
            for j in range(i, max(-1, i - REORDER), -1):
                try:
                    got[i] = self._dec.get_frame_at(j).data.cpu()
                    break
                except RuntimeError:
                    continue
            else:
                raise UnreadableVideo(f"{self.path}: frame {i} cannot be decoded")
        return torch.stack([got[i] for i in indices])

    def close(self):
        if self.decoder == "pyav" and getattr(self, "_dec", None) is not None:
            self._dec.close()
        self._dec = None


def _decode_still(path: str) -> torch.Tensor:
    """uint8 [3, H, W] RGB through Pillow (a torchvision dependency; needs no FFmpeg)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UnreadableVideo(f"{path}: {_short(e)}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_image(path: str) -> torch.Tensor:
    """A still image as a 1-frame clip [1, 3, H, W] uint8."""
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return _decode_still(path)[None]


def frame_files(folder: str, template: str, num_frames: int | None, start: int = 1) -> int:
    """Number of frames of a JPEG folder: from the list file when given, else counted on disk."""
    if num_frames:
        return num_frames
    n = 0
    while os.path.exists(os.path.join(folder, template.format(start + n))):
        n += 1
    return n


def read_frames_folder(folder: str, indices, template: str = "img_{:05d}.jpg", start: int = 1) -> torch.Tensor:
    """JPEG frames: clip frame i is the file template.format(start + i); [T, 3, H, W] uint8."""
    cache = {}
    for i in indices:
        if i not in cache:
            p = os.path.join(folder, template.format(start + int(i)))
            if not os.path.isfile(p):
                raise UnreadableVideo(f"{folder}: missing frame file {Path(p).name}")
            cache[i] = _decode_still(p)
    return torch.stack([cache[i] for i in indices])
