"""Reading frames: video files (torchcodec, PyAV fallback), JPEG frame folders, still images.

Every reader returns uint8 [T, 3, H, W] for the requested frame indices, in the requested order
(indices may repeat). Frame counts come from the stream's content, not its header: headers lie
(PyAV's `stream.frames` reads 0, -1 or garbage on real WebM/MKV/MP4 files; AVIs can claim a frame
they do not hold), so torchcodec runs in its `exact` seek mode (one scan of the packets, no
decoding) and PyAV counts the packets the same way.

One reader class per source (TorchcodecVideo, PyAVVideo, PyAVInOrder for AVI, FrameFolder,
StillImage) behind one interface: `len()`, `read(indices)`, `close()`; `open_reader` picks it.
Video files also have a time line (`times()`, `span()`, `read_at(seconds)`: the frame shown at
each time, from the stream's timestamps), for long videos scored in windows.

Decoders:
  torchcodec  one batched `get_frames_at` call for all indices of a clip: seeks to the nearest
              key frame before each run of frames and decodes only what it needs.
  pyav        the fallback when torchcodec cannot load FFmpeg's shared libraries (PyAV's wheel
              carries its own FFmpeg). Seek-based as well: it seeks to the key frame before a
              wanted frame when one lies between, never decodes the whole video, and skips the
              unwanted frames that no other frame refers to (FFmpeg's skip_frame, which torchcodec
              does not expose): the same pixels, less decoding.

AVI is read by PyAV under either decoder. AVI has no presentation timestamps; the container makes
them up in packet order, so with B-frames an index maps to a neighbouring frame in both decoders.
Frames are therefore counted in output (display) order from the start, up to the last wanted one.
torchcodec can only do that by converting every frame it passes (it has no decode-without-convert
call); PyAV converts only the wanted ones. On the 1080p NTU clip converting every frame costs
about twice the decoding (benchmarks/decode.py: pyav-full 0.8 clips/s, decode-only 2.4).
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import get_worker_info

from tkvr.base.errors import Fault

VIDEO_EXTS = {
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
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


# ---------------------------------------------------------------- torchcodec
def _threads() -> int:
    """FFmpeg's own threads help a lone reader (0: FFmpeg picks); DataLoader workers already fill
    the cores, so each decodes on one."""

    return 1 if get_worker_info() is not None else 0


def _tc_decoder(path: str, device: str = "cpu"):
    from torchcodec.decoders import (
        VideoDecoder,  # deferred: loads FFmpeg's libraries, only when a video is read or written
    )

    source = path
    try:
        path.encode()
    except UnicodeEncodeError:  # a name that is not UTF-8 (bytes on Linux): torchcodec takes str
        source = open(path, "rb")  # as UTF-8 only, so it reads this one through the open file
    try:
        return VideoDecoder(source, seek_mode="exact", device=device, num_ffmpeg_threads=_threads())
    except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError for bad files
        if "best video stream is unknown" in str(e):  # torchcodec's words for "no video stream"
            raise UnreadableVideo(f"{path}: {NO_VIDEO}") from None
        raise UnreadableVideo(f"{path}: {_short(e)}") from None


NO_VIDEO = "no video stream (audio only?)"  # the same words from every reader


def _short(e: Exception) -> str:
    """One short line: torchcodec's messages start with its C++ source location, which tells a
    user nothing; the file is named by the caller."""
    text = str(e).strip().splitlines()
    if not text:
        return type(e).__name__
    line = re.sub(r"\s*\S+\.(?:cpp|cc|h):\d+[,:]?\s*", " ", text[0]).strip(" ,:")
    return f"{type(e).__name__}: {line[:160]}"


# ---------------------------------------------------------------- PyAV
def _av_open(path: str):
    import av  # deferred: PyAV, the fallback decoder, loads only when a file needs it

    try:
        # Metadata of real files is not always UTF-8 (HMDB-51 AVIs hold Latin-1 titles): the
        # frames are what matters, so undecodable metadata bytes are dropped, not fatal.
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # noqa: BLE001 - av.error.* for bad files
        raise UnreadableVideo(f"{path}: {_short(e)}") from None
    if not container.streams.video:
        container.close()
        raise UnreadableVideo(f"{path}: {NO_VIDEO}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = _threads()
    return container


def _av_frame_pts(container) -> tuple[list[int], list[int]]:
    """Presentation timestamps of every frame, from the packets (no decoding), in display order,
    and the display positions of the key frames."""
    stream = container.streams.video[0]
    packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size > 0]
    container.seek(0)
    pts = sorted(t for t, _ in packets)
    where = {t: i for i, t in enumerate(pts)}
    return pts, sorted(where[t] for t, key in packets if key)


def _av_frames(container, stream, skip: set[int]):
    """Decoded frames from the current position. Packets whose timestamp is in `skip` are decoded
    only if other frames refer to them: FFmpeg skips non-reference frames (B-frames in most H.264)
    under skip_frame=NONREF. Set per packet, since a wanted frame may be a non-reference one."""
    ctx = stream.codec_context
    for packet in container.demux(stream):
        ctx.skip_frame = "NONREF" if packet.pts in skip else "DEFAULT"
        yield from stream.decode(packet)


def _av_read(container, pts: list[int], keys: list[int], indices: list[int]) -> list[torch.Tensor]:
    """Decode the frames at `indices` (positions in display order): seek to the key frame before a
    wanted frame when one lies between it and where decoding stands, decode forward otherwise,
    skipping the unwanted frames that nothing refers to."""
    stream = container.streams.video[0]
    wanted = set(indices)
    pos = {p: i for i, p in enumerate(pts)}
    skip = set(pts) - {pts[i] for i in wanted}
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
            # Output order can differ from timestamp order: go a little past idx before giving up.
            if idx in got or i > idx + REORDER:
                break
        return last

    def seek(i):
        container.seek(pts[i], stream=stream, backward=True, any_frame=False)
        return _av_frames(container, stream, skip)

    it, last = None, -1
    for idx in sorted(wanted):
        if idx in got:
            continue
        key = keys[max(0, bisect.bisect_right(keys, idx) - 1)] if keys else 0
        if it is None or idx <= last - REORDER or key > last:
            it = seek(idx)
        last = decode_until(idx, it)
        if idx not in got:  # a seek that landed past the frame: decode from the start once
            it = seek(0)
            last = decode_until(idx, it)
        if idx not in got:
            raise UnreadableVideo(f"frame {idx} could not be decoded")
    return [got[i] for i in indices]


def _rgb(frame) -> torch.Tensor:
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)  # [3, H, W]


class _InOrder:
    """Frames counted in output (display) order from the start of a container. A read that starts
    at or after where the previous one stopped continues from there, so the windows of a long AVI,
    asked for in time order, decode the file once; an earlier index starts again from the top."""

    def __init__(self, container):
        self.container, self.frames, self.next, self.last = container, None, 0, None

    def read(self, indices: list[int]) -> tuple[dict[int, torch.Tensor], int | None]:
        """-> (frames by index, None), or (frames, n) when the stream ended after n frames, before
        the last index; then frames[n - 1] holds its last frame."""
        wanted, stop = set(indices), max(indices)
        got: dict[int, torch.Tensor] = {}
        if self.frames is None or min(indices) < self.next:
            self.container.seek(0)
            self.frames = self.container.decode(self.container.streams.video[0])
            self.next, self.last = 0, None
        if self.last is not None and self.next - 1 in wanted:
            got[self.next - 1] = _rgb(self.last)
        for frame in self.frames:
            i, self.last = self.next, frame
            self.next += 1
            if i in wanted:
                got[i] = _rgb(frame)
            if i >= stop:
                return got, None
        self.frames = None  # the stream ended
        n = self.next
        if self.last is not None and n - 1 not in got:
            got[n - 1] = _rgb(self.last)
        return got, n


# ---------------------------------------------------------------- readers
class Reader:
    """One source of frames: `len()` frames (counted from content), `read(indices)` -> uint8
    [T, 3, H, W] in the order asked (indices may repeat), `close()`. One subclass per source."""

    decoder = ""
    path = ""

    def __len__(self) -> int:
        return self.num_frames

    def read(self, indices) -> torch.Tensor:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:4]} outside 0..{self.num_frames - 1}")
        try:
            return self._read(indices)
        except UnreadableVideo:
            raise
        except (MemoryError, torch.OutOfMemoryError):
            raise _out_of_memory(self.path, len(indices)) from None
        except Exception as e:  # noqa: BLE001 - a corrupt stream fails mid-decode
            if "allocate memory" in str(e) or "out of memory" in str(e).lower():  # torch's CPU allocator
                raise _out_of_memory(self.path, len(indices)) from None
            raise UnreadableVideo(f"{self.path}: {_short(e)}") from None

    def _read(self, indices: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- time (long videos scored in windows): only video files have it
    def times(self) -> list[float]:
        """Presentation time in seconds of every frame, in display order (from the stream's
        timestamps: a variable-frame-rate file is placed right)."""
        raise UnreadableVideo(f"{self.path}: a {self.decoder} source has no time line")

    def span(self) -> tuple[float, float]:
        """(first frame's time, end of the last frame) in seconds."""
        t = self.times()
        step = sorted(b - a for a, b in zip(t, t[1:]))[len(t) // 2 - 1] if len(t) > 1 else 0.0
        return t[0], t[-1] + step  # the last frame lasts as long as a typical one

    def read_at(self, seconds: list[float]) -> torch.Tensor:
        """uint8 [N, 3, H, W]: the frame shown at each time (the last one that starts at or
        before it; a microsecond's slack, so a time computed as a segment's start that lands a
        rounding error before its frame still takes it)."""
        t = self.times()
        return self.read([max(0, bisect.bisect_right(t, s + 1e-6) - 1) for s in seconds])


# What a file named like a video may really be: FFmpeg would read an image as a 1-frame video
# and follow a playlist or a concat list to other files, so these are refused by their first bytes.
NOT_VIDEO = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"#EXTM3U", "an HLS playlist"),
    (b"ffconcat version", "an FFmpeg concat list"),
)


def _out_of_memory(path: str, frames: int):
    """Memory is the machine's limit, never a bad file: the run stops and says how to ask less."""
    return Fault(
        f"out of memory while reading {frames} frames of {path}; lower --views, --frames or --batch-size"
    )


def why_missing(path: str) -> str:
    """Why `path` does not open as a file, in words: a symlink loop and a link to nothing are not
    'no such file'."""

    if "\x00" in path:
        return "a name with a NUL byte, which no file has"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        if os.path.islink(path):
            return f"a symlink to {os.readlink(path)}, which does not exist"
        return "no such file"
    return "no such file" if not os.path.isdir(path) else "a folder, not a file"


def reason(path: str, e: Exception) -> str:
    """What a failed read says in a report: the decoder's one line, or why the file is not there."""
    if isinstance(e, UnreadableVideo):
        return str(e)
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
        return f"{path}: {denied(e)}"
    return f"{path}: {why_missing(path)}"


def denied(e: OSError) -> str:
    """An error opening an input, as its line says it ("permission denied")."""
    return "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__).lower()


def check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {why_missing(path)}")
    if os.path.getsize(path) == 0:
        raise UnreadableVideo(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:  # a file that is there but cannot be read is an unreadable sample
        raise UnreadableVideo(f"{path}: {denied(e)}") from None
    for magic, what in NOT_VIDEO:
        if head.startswith(magic):
            raise UnreadableVideo(f"{path}: {what}, not a video")


def _counted(reader: Reader, header: int | None = None) -> Reader:
    """A reader whose file holds frames, and all the frames its index lists: a file cut short
    keeps an index (MP4 'moov', AVI header) naming frames that are gone, and decoders then
    return wrong frames or fail at random."""
    if reader.num_frames <= 0:
        reader.close()
        raise UnreadableVideo(f"{reader.path}: no frames")
    problem = cut_short(reader.path, reader.num_frames, header)
    if problem:
        reader.close()
        raise UnreadableVideo(problem)
    return reader


def cut_short(path: str, frames: int, header: int | None) -> str | None:
    """Why a file whose index lists `header` frames but holds `frames` is cut short, or None (a
    few missing frames are placeholders, as in DivX AVIs)."""
    if header and header - frames > max(PyAVInOrder.SLACK, header // 20):
        return f"{path}: cut short: {frames} of the {header} frames its index lists are in the file"
    return None


class TorchcodecVideo(Reader):
    """torchcodec: one batched `get_frames_at` call for all indices of a clip."""

    decoder = "torchcodec"

    def __init__(self, path: str, device: str = "cpu"):
        self.path = path
        self._dec = _tc_decoder(path, device)
        self.num_frames = int(self._dec.metadata.num_frames or 0)
        self.header_frames = self._dec.metadata.num_frames_from_header

    def _read(self, indices: list[int]) -> torch.Tensor:
        try:
            return self._dec.get_frames_at(indices).data.cpu()  # [T, 3, H, W] uint8
        except RuntimeError:
            return self._read_each(indices)

    def _read_each(self, indices: list[int]) -> torch.Tensor:
        """Slow path after a failed batch: frames one by one; a frame the stream cannot deliver by
        its timestamp (a packet whose frame the decoder drops) is replaced by the nearest earlier
        one that it can."""
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

    def close(self) -> None:
        self._dec = None

    def span(self) -> tuple[float, float]:
        m = self._dec.metadata
        return float(m.begin_stream_seconds), float(m.end_stream_seconds)

    def read_at(self, seconds: list[float]) -> torch.Tensor:
        """torchcodec's own frame-at-time lookup (from the scanned timestamps), in time order, so
        the decoder moves forward through the file instead of seeking back."""
        begin, end = self.span()
        inside = [min(max(s, begin), end - 1e-6) for s in seconds]
        try:
            return self._dec.get_frames_played_at(inside).data.cpu()  # [N, 3, H, W]
        except Exception as e:  # noqa: BLE001 - a corrupt stream fails mid-decode
            raise UnreadableVideo(f"{self.path}: {_short(e)}") from None


class PyAVVideo(Reader):
    """PyAV, seek-based: frame positions in display order from the packets, no full decode."""

    decoder = "pyav"

    def __init__(self, path: str):
        self.path = path
        self._dec = _av_open(path)
        try:
            self._pts, self._keys = _av_frame_pts(self._dec)
        except Exception as e:  # noqa: BLE001
            self.close()
            raise UnreadableVideo(f"{path}: {_short(e)}") from None
        self.num_frames = len(self._pts)
        self.header_frames = self._dec.streams.video[0].frames

    def _read(self, indices: list[int]) -> torch.Tensor:
        return torch.stack(_av_read(self._dec, self._pts, self._keys, indices))

    def times(self) -> list[float]:
        base = float(self._dec.streams.video[0].time_base)
        return [p * base for p in self._pts]

    def close(self) -> None:
        if getattr(self, "_dec", None) is not None:
            self._dec.close()
        self._dec = None


class PyAVInOrder(PyAVVideo):
    """AVI: frames counted in output (display) order from the start (module doc).

    DivX AVIs with packed B-frames hold placeholder packets that decode to no frame, so the
    packet count can exceed the frames by one or two (seen on real HMDB-51 clips). When the
    stream ends that little short of a wanted index, the count becomes what decoded and the
    index is clamped to the last frame; a larger shortfall is a damaged file."""

    SLACK = 2  # placeholder packets tolerated at the end

    def __init__(self, path: str):
        super().__init__(path)
        self._order = _InOrder(self._dec)

    def _read(self, indices: list[int]) -> torch.Tensor:
        got, ended = self._order.read(indices)
        if ended is not None:
            if ended == 0 or self.num_frames - ended > self.SLACK:
                raise UnreadableVideo(
                    f"{self.path}: the stream ends after {ended} of its {self.num_frames} "
                    "frames (damaged or cut file)"
                )
            self.num_frames = ended
            indices = [min(i, ended - 1) for i in indices]
        return torch.stack([got[i] for i in indices])

    def times(self) -> list[float]:
        """AVI's timestamps are made up in packet order (above): frame i is shown at i / rate."""
        rate = self._dec.streams.video[0].average_rate or self._dec.streams.video[0].guessed_rate or 25
        return [i / float(rate) for i in range(self.num_frames)]


def VideoFile(path, decoder: str = "torchcodec", device: str = "cpu") -> Reader:
    """Open a video file with the reader for `decoder` (AVIs: PyAV in display order)."""
    path = str(path)
    check_file(path)
    # AVI has no presentation timestamps: the container invents them, and with B-frames both
    # decoders map an index to the wrong frame (off by 1-2, seen on real UCF-101 and NTU clips).
    if Path(path).suffix.lower() == ".avi":
        reader = PyAVInOrder(path)
    elif decoder == "torchcodec":
        reader = TorchcodecVideo(path, device)
    else:
        reader = PyAVVideo(path)
    return _counted(reader, reader.header_frames)


class FrameFolder(Reader):
    """JPEG frames: clip frame i is the file template.format(start + i). The frames are counted on
    disk, not taken from the list file: the released code samples from the files it finds
    (datasets/datasets.py at 238c07f, `len(os.listdir(...))`), and list counts can be wrong (its
    UCF-101 list gives 163 for v_ApplyEyeMakeup_g01_c01)."""

    decoder = "jpeg"

    def __init__(
        self,
        folder: str,
        template: str = "img_{:05d}.jpg",
        start: int = 1,
        device: str = "cpu",
    ):
        self.path, self.template, self.start, self.device = folder, template, start, device
        self.num_frames = frame_files(folder, template)
        if self.num_frames == 0:
            raise UnreadableVideo(f"{folder}: no frames matching {template}")

    def _read(self, indices: list[int]) -> torch.Tensor:
        return read_frames_folder(self.path, indices, self.template, self.start, self.device)


class StillImage(Reader):
    """A still image: a 1-frame video; any number of reads of frame 0 share one decoded image."""

    decoder = "pillow"

    def __init__(self, path: str):
        self.path = path
        self.image = read_image(path)  # [1, 3, H, W]
        self.num_frames = 1

    def _read(self, indices: list[int]) -> torch.Tensor:
        return self.image.expand(len(indices), *self.image.shape[1:])


@dataclass(frozen=True)
class Reading:
    """How a sample's frames are read: the decided --decoder, its --decode-device, and the file
    names of a frame folder's frames (a dataset's `frame_template` and `frame_start`)."""

    decoder: str = "torchcodec"
    device: str = "cpu"
    frame_template: str = "img_{:05d}.jpg"
    frame_start: int = 1

    @classmethod
    def of(cls, src, decoder: str, device: str = "cpu") -> "Reading":
        """The reading of a resolved data source's samples (src: tkvr.data.specs.DataSource)."""
        return cls(decoder, device, src.frame_template, src.frame_start)

    def open(self, path: str) -> "Reader":
        return open_reader(path, self.decoder, self.device, self.frame_template, self.frame_start)


def open_reader(
    path: str,
    decoder: str = "torchcodec",
    device: str = "cpu",
    frame_template: str = "img_{:05d}.jpg",
    frame_start: int = 1,
) -> Reader:
    """The reader for any sample: a video file, a still image or a folder of JPEG frames."""
    kind = kind_of(path)
    if kind == "image":
        return StillImage(path)
    if kind == "frames":
        return FrameFolder(path, frame_template, frame_start, device)
    return VideoFile(path, decoder, device)


def _decode_still(path: str) -> torch.Tensor:
    """uint8 [3, H, W] RGB through Pillow (a torchvision dependency; needs no FFmpeg)."""
    import numpy as np  # deferred: only this path needs numpy

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except PermissionError as e:
        raise UnreadableVideo(f"{path}: {denied(e)}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UnreadableVideo(f"{path}: {_short(e)}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_image(path: str) -> torch.Tensor:
    """A still image as a 1-frame clip [1, 3, H, W] uint8."""
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return _decode_still(path)[None]


def frame_files(folder: str, template: str) -> int:
    """Number of frames of a folder: the files whose names fit the template (its text around a
    run of digits), counted on disk as the released code counts them (datasets/datasets.py at
    238c07f: len(os.listdir(...)), where the folder holds only frames; other files, such as a
    .DS_Store, are not counted here). A frame missing from the run, or a wrong --frame-start, then
    shows as a missing frame file when it is read."""
    parts = [(text, field) for text, field, _, _ in string.Formatter().parse(template)]
    if len(parts) < 1 or parts[0][1] is None or "/" in template:
        return len(os.listdir(os.path.dirname(os.path.join(folder, template)) or folder))
    head, tail = parts[0][0], "".join(text for text, _ in parts[1:])
    return sum(
        1
        for f in os.listdir(folder)
        if f.startswith(head) and f.endswith(tail) and f[len(head) : len(f) - len(tail)].isdigit()
    )


def read_frames_folder(
    folder: str, indices, template: str = "img_{:05d}.jpg", start: int = 1, device: str = "cpu"
) -> torch.Tensor:
    """Frame files: clip frame i is the file template.format(start + i); [T, 3, H, W] uint8.

    JPEG frames are decoded in one batch by torchcodec (libjpeg-turbo on the CPU, the same pixels
    as Pillow; nvJPEG with `device` cuda), each distinct frame once; other formats, and machines
    where torchcodec cannot load, through Pillow."""
    wanted = sorted(set(int(i) for i in indices))
    paths = [os.path.join(folder, template.format(start + i)) for i in wanted]
    for p in paths:
        if not os.path.isfile(p):
            raise UnreadableVideo(f"{folder}: missing frame file {Path(p).name}")
    if Path(template).suffix.lower() in (".jpg", ".jpeg") and torchcodec_error() is None:
        from torchcodec.decoders import (
            decode_jpeg,  # deferred: loads FFmpeg's libraries, only when a video is read or written
        )

        frames = [f.cpu() for f in decode_jpeg(paths, mode="RGB", device=device)]  # host memory, as for video
    else:
        frames = [_decode_still(p) for p in paths]
    got = dict(zip(wanted, frames))
    return torch.stack([got[int(i)] for i in indices])
