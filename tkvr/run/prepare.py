"""`tkvr prepare`: rewrite a dataset once into a form that trains fast.

Real clips hold a key frame every few seconds, so reading 8 frames spread over a clip decodes
nearly all of it. The prepared copy re-encodes every video with H.264 at a modest short side
(`--short-side`, default 320, aspect kept, never upscaled), a key frame every `--gop` frames and
no B-frames, so any sampled frame is at most gop - 1 frames of decoding away and display order is
decode order. Audio is dropped. Still images and JPEG frame folders are listed as they are.

The new dataset is a folder: videos/ (one file per distinct source video), labels.txt,
train.txt / val.txt (list files), dataset.yaml (name, flip, prompt templates of the source), and
unreadable.txt when some sources could not be read. `--data DIR` then works in every command.

Resumable and kill-safe: a video is encoded to a hidden `.NAME.part` file and renamed when whole;
a rerun skips finished files and removes parts left by a killed run. One run at a time holds the
output folder (fileio.hold: a second run is refused, naming the first's pid; a killed run holds
nothing). Sources that do not read (tkvr's own checks first: cut files, images
named like videos, audio only) are named, left out of the lists and counted; the run goes on, and
unreadable.txt lists this run's result. An error writing the output (disk full, read-only,
quota) is not a source's: the run stops in one line, exit 1, the finished videos kept. `--out`
inside the source dataset is refused; names a list file cannot hold (a line break) are renamed
for videos and refused for images and frame folders.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing as mp
import os
import re
import signal
from fractions import Fraction
from pathlib import Path

import yaml

from tkvr.base.errors import DISK_FAULTS, WRITE_FAULTS, Fault, TkvrError
from tkvr.base.fileio import atomic_write_text, hold
from tkvr.base.procs import deaf_children
from tkvr.base.progress import count, say, track, wrote
from tkvr.data.specs import resolve
from tkvr.data.video import NO_VIDEO, UnreadableVideo, _short, check_file, cut_short, kind_of
from tkvr.run import auto


def out_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the short side at most `short`, aspect kept, both even (H.264's 4:2:0).

    >>> out_size(1920, 1080, 320), out_size(340, 256, 320), out_size(241, 321, 320)
    ((568, 320), (340, 256), (240, 320))
    """
    scale = min(1.0, short / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # what a file of one entry a line cannot hold


def target(folder: Path, src: str) -> Path:
    """A stable name per source file: distinct sources never collide, a rerun finds its file.
    Control characters (a line break is legal in a Linux file name) become '_': a list file
    holds one path a line."""
    digest = hashlib.sha1(os.fsencode(os.path.abspath(src))).hexdigest()[:10]  # names are bytes
    return folder / f"{digest}_{CONTROL.sub('_', Path(src).stem)}.mp4"


def write_fault(e: BaseException, src: str) -> bool:
    """Whether an error while re-encoding `src` is the output's (the disk), not the source's."""
    if not isinstance(e, OSError) or e.errno not in WRITE_FAULTS:
        return False
    return e.errno in DISK_FAULTS or e.filename not in (
        None,
        src,
    )  # permission: the output's, not the source's


def encode(job: tuple[str, str, int, int, int]) -> tuple[str, str | None, bool]:
    """Re-encode one video: (source, destination, short side, gop, crf) -> (source, error or None,
    whether the error is a write fault)."""
    import av  # deferred: PyAV, the fallback decoder, loads only when a file needs it

    src, dst, short, gop, crf = job
    part = Path(dst).with_name(f".{Path(dst).name}.part")
    try:
        check_file(src)  # tkvr's checks: empty files, images or playlists named like videos
        with av.open(src, metadata_errors="ignore") as inp:
            if not inp.streams.video:
                raise UnreadableVideo(f"{src}: {NO_VIDEO}")
            stream = inp.streams.video[0]
            stream.thread_count = 1  # the pool fills the cores
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            with av.open(str(part), "w", format="mp4") as out:
                enc, n = None, 0
                for frame in inp.decode(stream):  # display order, as tkvr's readers count frames
                    if enc is None:
                        w, h = out_size(frame.width, frame.height, short)
                        enc = out.add_stream("libx264", rate=rate)
                        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
                        enc.codec_context.time_base = 1 / Fraction(rate)
                        enc.options = {
                            "g": str(gop),
                            "bf": "0",
                            "crf": str(crf),
                            "preset": "veryfast",
                            "threads": "1",
                            "x264-params": "scenecut=0",
                        }  # key frames every gop frames
                    img = frame.reformat(width=w, height=h, format="yuv420p")
                    img.pts, img.time_base = n, enc.codec_context.time_base
                    # the source's I-frames must not force key frames
                    img.pict_type = av.video.frame.PictureType.NONE
                    n += 1
                    out.mux(enc.encode(img))
                if enc is None:
                    raise UnreadableVideo(f"{src}: no frames")
                problem = cut_short(src, n, stream.frames)  # counted while decoding: no second pass
                if problem:
                    raise UnreadableVideo(problem)
                out.mux(enc.encode(None))
        try:
            os.replace(part, dst)
        except FileNotFoundError:  # another process removed the part: the output's fault, not the source's
            return (
                src,
                f"cannot write {dst}: its part file vanished (another process in {Path(dst).parent}?)",
                True,
            )
        return src, None, False
    except Exception as e:  # noqa: BLE001 - any failure of one source is that source's, reported
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass
        if write_fault(e, src):
            return src, f"cannot write {e.filename or dst}: {e.strerror or e}", True
        return src, str(e) if isinstance(e, UnreadableVideo) else f"{src}: {_short(e)}", False


def check_out(out: Path, src) -> None:
    """--out must lie outside the source dataset: inside it, the output becomes part of the
    dataset (a class 'prep', its videos listed as training data by the next run)."""
    origin = Path(src.origin) if src.origin else None
    if origin is None or not origin.exists():
        return
    home = os.path.realpath(origin if origin.is_dir() else origin.parent)
    where = os.path.realpath(out)
    if where == home or where.startswith(home + os.sep):
        raise TkvrError(
            f"--out {out} lies inside the source dataset {home}; the output would become part of "
            "it: choose a folder outside it"
        )


def listable(src) -> None:
    """Class names and listed paths that a text file of one entry a line cannot hold are refused
    by name before any work (videos get new names; images and frame folders are listed as they are)."""

    for c in src.classes:
        if CONTROL.search(c):
            raise TkvrError(
                f"class {c!r} holds a line break or control character, which labels.txt cannot "
                "hold; rename its folder or label"
            )
    for xs in src.splits.values():
        for x in xs:
            if kind_of(x.path) != "video" and CONTROL.search(x.path):
                raise TkvrError(
                    f"{x.path!r}: a line break or control character in the name, which a list file "
                    "cannot hold; rename it"
                )


def prepare(s, *, out: str, short_side: int, gop: int, crf: int) -> dict:
    """The source `s` (a SourceConfig) re-encoded into the dataset folder `out`.
    -> {videos, encoded, skipped (already done), unreadable: [messages]}."""
    src = resolve(s.data, s.data_root, s.fold_or())
    out = Path(out)
    check_out(out, src)
    listable(src)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    with hold(out, "--out", "prepare", folder=True):
        return _prepare(s, src, out, videos, (short_side, gop, crf))


def _prepare(s, src, out: Path, videos: Path, enc: tuple[int, int, int]) -> dict:
    short_side, gop, crf = enc
    for stale in videos.glob(".*.part"):  # a killed run's unfinished file: no live run owns it (the lock)
        stale.unlink()
    samples = {split: src.split(split) for split in src.splits if src.splits[split]}
    sources = sorted({x.path for xs in samples.values() for x in xs if kind_of(x.path) == "video"})
    todo = [
        (p, str(target(videos, p)), short_side, gop, crf) for p in sources if not target(videos, p).is_file()
    ]
    say(
        f"prepare {src.name} -> {out}: {count(len(sources), 'video')}, "
        f"{len(sources) - len(todo)} already done; "
        f"short side {short_side}, a key frame every {gop} frames"
    )
    workers = auto.workers(s.workers)
    bad: dict[str, str] = {}
    try:
        if workers > 0 and len(todo) > 1:
            # leaving the block stops the other workers at a fault
            with pool_of(workers) as pool:
                stop_at_fault(track(pool.imap_unordered(encode, todo), len(todo), "re-encoding"), bad, videos)
        else:
            stop_at_fault(track(map(encode, todo), len(todo), "re-encoding"), bad, videos)
    except (Fault, KeyboardInterrupt):
        for stale in videos.glob(".*.part"):  # the other workers' unfinished files, stopped with them
            stale.unlink(missing_ok=True)
        raise
    for e in list(bad.values())[:20]:
        say(f"unreadable, left out: {e}")
    lost = [p for p in sources if p not in bad and not target(videos, p).is_file()]
    if lost:  # a good video is never left out of the lists quietly
        raise Fault(
            f"{lost[0]}: its re-encoded file {target(videos, lost[0]).name} is missing after the run "
            f"({count(len(lost), 'video')} so); was --out changed by another process? rerun the same command"
        )

    def line(x) -> str:
        if kind_of(x.path) != "video":  # images and frame folders are already cheap to read
            return (
                f"{os.path.abspath(x.path)} {x.frames} {x.label}\n"
                if x.frames
                else f"{os.path.abspath(x.path)} {x.label}\n"
            )
        return f"{target(videos, x.path).relative_to(out)} {x.label}\n"

    # a write error below reaches the command line's handler of write faults: one line, exit 1
    for split, xs in samples.items():
        atomic_write_text("".join(line(x) for x in xs if x.path not in bad), out / f"{split}.txt")
    atomic_write_text("".join(c + "\n" for c in src.classes), out / "labels.txt")
    meta = {
        "format": "list",
        "name": f"{src.name}-prepared",
        "labels": "labels.txt",
        "flip": src.flip,
        "templates": list(src.templates),
        "frame_template": src.frame_template,
        "frame_start": src.frame_start,
        **{split: f"{split}.txt" for split in samples},
    }
    atomic_write_text(yaml.safe_dump(meta, sort_keys=False), out / "dataset.yaml")
    listed = out / "unreadable.txt"  # this run's result: a source that reads now is no longer listed
    if bad:
        atomic_write_text("".join(p + "\n" for p in sorted(bad)), listed)
    elif listed.exists():
        listed.unlink()
    wrote(
        out,
        f"{count(len(sources) - len(bad), 'video')} ready, "
        f"{count(len(bad), 'unreadable source')} left out"
        + (f" (listed in {listed.name})" if bad else "")
        + f"; train with --data {out}",
    )
    return {
        "videos": len(sources),
        "encoded": len(todo) - len(bad),
        "skipped": len(sources) - len(todo),
        "unreadable": sorted(bad.values()),
    }


def pool_of(workers: int):
    """The encoders, started deaf to Ctrl-C (the command answers it and stops them)."""
    with deaf_children():
        return mp.get_context("spawn").Pool(workers, die_with, (os.getpid(),))


def die_with(parent: int) -> None:
    """A pool worker's first act: ask the kernel to kill it when its parent dies (Linux's
    parent-death signal), so a killed `tkvr prepare` leaves no worker writing into --out after
    its lock is gone; a parent gone before this ran ends the worker now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own handling remains
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the process group's Ctrl-C is the command's (a respawn)
    if os.getppid() != parent:
        os._exit(1)


def stop_at_fault(results, bad: dict, videos: Path) -> None:
    """Collect unreadable sources into `bad`; the first write fault stops the run (exit 1): the
    videos finished so far stay, a rerun of the same command goes on from them."""
    for src, error, fault in results:
        if fault:
            done = sum(1 for _ in videos.glob("*.mp4"))
            raise Fault(
                f"{error}; stopped: the {count(done, 'video')} finished in {videos} are kept, free space "
                "and rerun the same command to go on"
            )
        if error:
            bad[src] = error
