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
a rerun skips finished files and removes parts left by a killed run. Sources that do not read
(tkvr's own checks first: cut files, images named like videos) are named, left out of the lists
and counted; the run goes on.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

from tkvr.config import PrepareConfig
from tkvr.progress import count, say, track


def out_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the short side at most `short`, aspect kept, both even (H.264's 4:2:0).

    >>> out_size(1920, 1080, 320), out_size(340, 256, 320), out_size(241, 321, 320)
    ((568, 320), (340, 256), (240, 320))
    """
    scale = min(1.0, short / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def target(folder: Path, src: str) -> Path:
    """A stable name per source file: distinct sources never collide, a rerun finds its file."""
    digest = hashlib.sha1(os.path.abspath(src).encode()).hexdigest()[:10]
    return folder / f"{digest}_{Path(src).stem}.mp4"


def encode(job: tuple[str, str, int, int, int]) -> tuple[str, str | None]:
    """Re-encode one video: (source, destination, short side, gop, crf) -> (source, error or None)."""
    import av

    from tkvr.data.video import UnreadableVideo, _short, check_file, cut_short

    src, dst, short, gop, crf = job
    part = Path(dst).with_name(f".{Path(dst).name}.part")
    try:
        check_file(src)  # tkvr's checks: empty files, images or playlists named like videos
        with av.open(src, metadata_errors="ignore") as inp, av.open(str(part), "w", format="mp4") as out:
            stream = inp.streams.video[0]
            stream.thread_count = 1  # the pool fills the cores
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            enc, n = None, 0
            for frame in inp.decode(stream):  # display order, as tkvr's readers count frames
                if enc is None:
                    w, h = out_size(frame.width, frame.height, short)
                    enc = out.add_stream("libx264", rate=rate)
                    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
                    enc.codec_context.time_base = 1 / Fraction(rate)
                    enc.options = {"g": str(gop), "bf": "0", "crf": str(crf), "preset": "veryfast", "threads": "1",
                                   "x264-params": "scenecut=0"}  # key frames exactly every gop frames
                img = frame.reformat(width=w, height=h, format="yuv420p")
                img.pts, img.time_base = n, enc.codec_context.time_base
                img.pict_type = av.video.frame.PictureType.NONE  # the source's I-frames must not force key frames
                n += 1
                out.mux(enc.encode(img))
            if enc is None:
                raise UnreadableVideo(f"{src}: no frames")
            problem = cut_short(src, n, stream.frames)  # counted while decoding: no second pass over the file
            if problem:
                raise UnreadableVideo(problem)
            out.mux(enc.encode(None))
        os.replace(part, dst)
        return src, None
    except Exception as e:  # noqa: BLE001 - any failure of one source is that source's, reported
        if part.exists():
            part.unlink()
        return src, str(e) if isinstance(e, UnreadableVideo) else f"{src}: {_short(e)}"


def prepare(cfg: PrepareConfig) -> dict:
    """-> {videos, encoded, skipped (already done), unreadable: [messages]}; writes cfg.out."""
    import yaml

    from tkvr.data.loader import workers_for
    from tkvr.data.specs import resolve
    from tkvr.data.video import kind_of
    from tkvr.fileio import atomic_write_text

    cfg.validate()
    s = cfg.source
    src = resolve(s.data, s.data_root, s.fold_or())
    out = Path(cfg.out)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for stale in videos.glob(".*.part"):  # a killed run's unfinished file
        stale.unlink()
    samples = {split: src.split(split) for split in src.splits if src.splits[split]}
    sources = sorted({x.path for xs in samples.values() for x in xs if kind_of(x.path) == "video"})
    todo = [(p, str(target(videos, p)), cfg.short_side, cfg.gop, cfg.crf) for p in sources
            if not target(videos, p).is_file()]
    say(f"prepare {src.name} -> {out}: {count(len(sources), 'video')}, {len(sources) - len(todo)} already done; "
        f"short side {cfg.short_side}, a key frame every {cfg.gop} frames")
    workers = workers_for(s.workers)
    if workers > 0 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            errors = dict(track(pool.imap_unordered(encode, todo), len(todo), "re-encoding"))
    else:
        errors = dict(track(map(encode, todo), len(todo), "re-encoding"))
    bad = {p: e for p, e in errors.items() if e}
    for e in list(bad.values())[:20]:
        say(f"unreadable, left out: {e}")

    def line(x) -> str:
        if kind_of(x.path) != "video":  # images and frame folders are already cheap to read
            return f"{os.path.abspath(x.path)} {x.frames} {x.label}\n" if x.frames else \
                f"{os.path.abspath(x.path)} {x.label}\n"
        return f"{target(videos, x.path).relative_to(out)} {x.label}\n"

    for split, xs in samples.items():
        atomic_write_text("".join(line(x) for x in xs if x.path not in bad), out / f"{split}.txt")
    atomic_write_text("".join(c + "\n" for c in src.classes), out / "labels.txt")
    meta = {"format": "list", "name": f"{src.name}-prepared", "labels": "labels.txt", "flip": src.flip,
            "templates": list(src.templates), "frame_template": src.frame_template, "frame_start": src.frame_start,
            **{split: f"{split}.txt" for split in samples}}
    atomic_write_text(yaml.safe_dump(meta, sort_keys=False), out / "dataset.yaml")
    if bad:
        atomic_write_text("".join(p + "\n" for p in sorted(bad)), out / "unreadable.txt")
    say(f"{out}: {count(len(sources) - len(bad), 'video')} ready, {count(len(bad), 'unreadable source')} left out; "
        f"train with --data {out}")
    return {"videos": len(sources), "encoded": len(todo) - len(bad), "skipped": len(sources) - len(todo),
            "unreadable": sorted(bad.values())}
