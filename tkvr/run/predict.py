"""Top-k labels for many inputs, from a trained run or zero-shot from a pre-trained backbone
(`tkvr predict`); long videos scored in windows along their time line, merged into segments.

Inputs: files, folders (searched recursively for video and image files) and list files (.txt,
.lst, .list: one path per line, the first field, relative to the list's folder; dataset lists
such as "videos/a.mp4 12" work as they are). Each input is scored once, in the order given.

Rows leave as they are scored: `--out results.csv|.jsonl` is appended and flushed after every
batch, so a killed run loses at most the batch in flight, and `--resume` scores only the inputs
not yet in it. With `--window`, every window of a video is a row; a video's rows are written
together once its last window is scored, and on resume a video with fewer rows than windows (a
kill during that write) is scored again, its partial rows dropped first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tkvr.base.errors import Fault, TkvrError
from tkvr.base.fileio import atomic_write_bytes, atomic_write_text, hold
from tkvr.base.procs import loader_args
from tkvr.base.progress import bar, count, say, wrote
from tkvr.data.classes import DEFAULT_TEMPLATES, IMAGE_TEMPLATES, resolve_classes
from tkvr.data.loader import ClipDataset, loader
from tkvr.data.sampling import segment_indices
from tkvr.data.specs import Sample
from tkvr.data.toy import TEMPLATES as TOY_TEMPLATES
from tkvr.data.toy import foreign
from tkvr.data.transforms import EvalTransform
from tkvr.data.video import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    UnreadableVideo,
    denied,
    kind_of,
    open_reader,
    reason,
    why_missing,
)
from tkvr.model.settings import ModelConfig
from tkvr.model.video_model import preprocess_of, unwrap
from tkvr.run import auto
from tkvr.run.checkpoint import load_model, read_checkpoint, run_model
from tkvr.run.launch import make_fabric
from tkvr.run.settings import DeviceConfig, TrainConfig

LIST_EXTS = {".txt", ".lst", ".list"}


# ---------------------------------------------------------------- inputs
def gather(args: list[str]) -> list[str]:
    """Files, folders and list files -> the inputs to score, each once, in the order given."""
    paths, skipped = [], 0
    for a in args:
        p = Path(a)
        if p.is_dir():
            found, other, closed = [], 0, []
            for where, dirs, names in os.walk(p, onerror=closed.append):
                dirs.sort()
                for name in sorted(names):
                    f = Path(where) / name
                    if f.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS:
                        found.append(str(f))
                    else:
                        other += 1
            if closed:  # a folder that cannot be listed: said once, its files are not scored
                e = closed[0]
                say(
                    f"warning: cannot list {count(len(closed), 'folder')} in {a} ({e.filename}: "
                    f"{denied(e)}); their files are not scored"
                )
            if not found:
                raise TkvrError(f"{a}: no video or image files in this folder ({count(other, 'other file')})")
            paths += found
            skipped += other
        elif p.suffix.lower() in LIST_EXTS and p.is_file():
            lines = [x.strip() for x in p.read_bytes().decode(errors="surrogateescape").splitlines()]
            nul = next((n for n, x in enumerate(lines, 1) if "\x00" in x), None)
            if nul:  # no file name holds one: a damaged or binary file
                raise TkvrError(f"{a}:{nul}: holds a NUL byte; a list file names one input a line")
            listed = [_listed(p.parent, x) for x in lines if x and not x.startswith("#")]
            if not listed:
                raise TkvrError(f"{a}: the list file names no inputs")
            paths += listed
        elif p.exists():
            paths.append(a)
        else:
            raise TkvrError(f"{a}: {why_missing(a)}")
    if skipped:
        say(f"predict: {count(skipped, 'file')} in the folders skipped (not a video or an image)")
    return list(dict.fromkeys(paths))


def _listed(folder: Path, line: str) -> str:
    """A list file's line -> the input: the whole line when it names a file (names with spaces),
    else its first field (a dataset list's "path label"); relative to the list's folder."""
    for name in (line, line.split()[0]):
        path = name if os.path.isabs(name) else str(folder / name)
        if os.path.exists(path):
            return path
    return path  # missing: its row will say so


# ---------------------------------------------------------------- the model
def scorer(cfg, paths: list[str], ckpt: dict | None):
    """(model, class names, frames, test scale, what scores) from --checkpoint, or zero-shot from
    --backbone: the pre-trained encoder, TAP over the frames, a frozen head of the names embedded
    with the model's own templates and its own logit scale."""
    if ckpt is not None:
        classes = resolve_classes(cfg.labels, "--labels") if cfg.labels else ckpt["classes"]
        tcfg, _, model = load_model(ckpt, classes)
        source = ckpt["path"]  # names the weights: checkpoints/last.pt for a run directory
    else:
        classes = resolve_classes(cfg.labels, "--labels")
        tcfg = TrainConfig()  # a run's defaults (eval's test scale among them), TAP over the frames
        tcfg.model.backbone, tcfg.model.pretrained = cfg.backbone, cfg.pretrained
        tcfg.model.frames, tcfg.model.temporal = frames_for(cfg, None), "tap"
        templates = cfg.templates or own_templates(cfg.backbone, paths)
        _, model = run_model(tcfg, classes, templates)
        source = f"{cfg.backbone} (zero-shot)"
    if tcfg.model.backbone == "toy" and (odd := foreign(classes)):
        say(
            f"warning: the toy CLIP knows only the toy world's words (colours, shapes, moving left or "
            f"right); {len(odd)} of {count(len(classes), 'label')} have others (e.g. {odd[0]!r}): "
            "their scores mean nothing"
        )
    scale = cfg.test_scale if cfg.test_scale is not None else tcfg.data.test_scale
    return model, classes, frames_for(cfg, ckpt), scale, source


def frames_for(cfg, ckpt: dict | None) -> int:
    """--frames, else the checkpoint's, else a run's default."""
    return cfg.frames or (ckpt["config"]["model"]["frames"] if ckpt else ModelConfig().frames)


def own_templates(backbone: str, paths: list[str]) -> list[str]:
    """The toy CLIP's own prompt; a CLIP's: the released code's video prompt
    (modules/text_prompt.py at 238c07f), or a photo prompt when every input is a still image."""
    if backbone == "toy":
        return list(TOY_TEMPLATES)
    if all(kind_of(p) == "image" for p in paths):
        return list(IMAGE_TEMPLATES)
    return list(DEFAULT_TEMPLATES)


# ---------------------------------------------------------------- rows on disk
class Rows:
    """--out: rows appended and flushed as they come (csv or jsonl), read back on --resume.

    A row: file, [window, windows, start, end,] labels [k], scores [k] or error. File names are
    bytes on Linux: one that is not UTF-8 is written back as the same bytes (surrogateescape), so
    the row names the file that is on disk. The file (and a CSV's header) is created with the
    first row: a run that fails before scoring anything leaves nothing to refuse a rerun."""

    def __init__(self, path: str | None, k: int, windows: bool, resume: bool):
        self.path, self.k, self.windows = Path(path) if path else None, k, windows
        self.csv = self.path is not None and self.path.suffix.lower() == ".csv"
        self.columns = ["file"] + (["window", "windows", "start", "end"] if windows else [])
        self.columns += [f"{x}_{i}" for i in range(1, k + 1) for x in ("label", "score")] + ["error"]
        self.old: dict[str, list[dict]] = {}
        self.file = None
        if self.path is not None and resume and self.path.is_file():
            self.old = self._read_back()

    def _read_back(self) -> dict[str, list[dict]]:
        """Complete inputs already in the file. A partial last line, a row that does not parse (an
        edit, a cut inside a quoted name) and a video whose windows are not all there (a kill
        while writing) are dropped, by rewriting the file atomically without them: their inputs
        are scored again."""
        text = self.path.read_bytes().decode("utf-8", errors="surrogateescape")
        whole = text[: text.rfind("\n") + 1]  # a kill mid-line leaves a partial last line
        rows, bad = [], 0
        if self.csv:
            reader = csv.reader(io.StringIO(whole, newline=""))
            header = next(reader, None)
            if header and header != self.columns:
                raise TkvrError(
                    f"--out {self.path} has other columns ({', '.join(header[:6])}, ...): "
                    "continue it with the --top-k and --window it was written with, or give another --out"
                )
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error:  # e.g. a cut inside a quoted name: nothing after it parses
                    bad += 1
                    break
                r = self._from_csv(cells)
                rows += [r] if r else []
                bad += not r
        else:
            for line in whole.splitlines():
                try:
                    r = self._checked(json.loads(line))
                except (ValueError, RecursionError):
                    r = None
                rows += [r] if r else []
                bad += not r
            if rows and ("window" in rows[0]) != self.windows:
                raise TkvrError(
                    f"--out {self.path} was written {'with' if 'window' in rows[0] else 'without'} "
                    "--window: continue it the same way, or give another --out"
                )
        by_file: dict[str, list[dict]] = {}
        for r in rows:
            by_file.setdefault(r["file"], []).append(r)
        done = {
            f: rs
            for f, rs in by_file.items()
            if "error" in rs[0] or not self.windows or len({r["window"] for r in rs}) == int(rs[0]["windows"])
        }
        if bad:
            say(f"--resume: {count(bad, 'row')} of {self.path} did not parse (cut or edited); scored again")
        if whole != text or bad or len(done) != len(by_file):
            kept = [r for rs in done.values() for r in rs]
            header = ",".join(self.columns) + "\n" if self.csv and kept else ""
            atomic_write_bytes(
                (header + "".join(self._line(r) for r in kept)).encode(errors="surrogateescape"), self.path
            )
        return done

    def _from_csv(self, cells: list[str]) -> dict | None:
        if len(cells) != len(self.columns):
            return None
        return self._checked(dict(zip(self.columns, cells)), text=True)

    def _checked(self, r, text: bool = False) -> dict | None:
        """A row read back, with its types checked (and, from CSV, parsed); None if it is not one
        tkvr wrote: a row that cannot be trusted is scored again, not kept."""
        try:
            if not isinstance(r, dict) or not isinstance(r.get("file"), str) or not r["file"]:
                return None
            out = {"file": r["file"]}
            if self.windows:
                out.update(
                    window=int(r["window"]),
                    windows=int(r["windows"]),
                    start=float(r["start"]),
                    end=float(r["end"]),
                )
            if r.get("error"):
                return {**out, "error": str(r["error"])}
            if self.windows and not 0 <= out["window"] < out["windows"]:
                return None
            if text:
                n = [i for i in range(1, self.k + 1) if r[f"label_{i}"] != ""]
                labels, scores = [r[f"label_{i}"] for i in n], [float(r[f"score_{i}"]) for i in n]
            else:
                labels, scores = r["labels"], [float(v) for v in r["scores"]]
            ok = (
                isinstance(labels, list)
                and 0 < len(labels) == len(scores) <= self.k
                and all(isinstance(x, str) for x in labels)
                and all(0.0 <= v <= 1.0 for v in scores)
            )
            return {**out, "labels": labels, "scores": scores} if ok else None
        except (KeyError, TypeError, ValueError):
            return None

    def _line(self, r: dict) -> str:
        if not self.csv:
            return json.dumps(r) + "\n"
        cells = {"file": r["file"], "error": r.get("error", "")}
        for key in ("window", "windows", "start", "end"):
            if key in r:
                cells[key] = r[key]
        for i, (lab, s) in enumerate(zip(r.get("labels", []), r.get("scores", [])), 1):
            cells[f"label_{i}"], cells[f"score_{i}"] = lab, s
        buf = io.StringIO()
        csv.DictWriter(buf, self.columns, restval="", lineterminator="\n").writerow(cells)
        return buf.getvalue()

    def write(self, rows: list[dict]) -> None:
        if self.path is None or not rows:
            return
        try:
            if self.file is None:  # the first row: the file, and a CSV's header, come with it
                fresh = not self.path.is_file() or self.path.stat().st_size == 0
                self.file = open(self.path, "a", newline="", encoding="utf-8", errors="surrogateescape")
                if fresh and self.csv:
                    self.file.write(",".join(self.columns) + "\n")
            self.file.write("".join(self._line(r) for r in rows))  # one write: a video's rows together
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:  # a full disk: the write names no file by itself
            raise Fault(
                f"cannot write --out {self.path}: {e.strerror or e}; the rows before are kept (a row cut "
                "short is dropped on resume): free space and rerun with --resume"
            ) from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------- long videos
def window_starts(begin: float, end: float, window: float, stride: float) -> list[float]:
    """Starts of the windows [s, s + window) every `stride` seconds from `begin`, and one more
    ending at `end` when the stride leaves the tail uncovered; a video shorter than one window is
    one window, the whole of it."""
    if end - begin < window + 1e-9:
        return [begin]
    starts = [begin + i * stride for i in range(int((end - begin - window) / stride + 1e-9) + 1)]
    if starts[-1] + window < end - 1e-6:
        starts.append(end - window)
    return starts


def window_times(start: float, window: float, frames: int) -> list[float]:
    """The clip of a window as eval samples a 1-clip view, in time: T equal segments, the start of
    each (the released test protocol's first frame of each segment, tkvr.data.sampling)."""
    return [start + j * window / frames for j in range(frames)]


def too_short(path: str, window: float, frames: int, n: int, begin: float, end: float) -> str | None:
    """Why `window` seconds cannot fill `frames` distinct frames of a video of n frames, or None."""
    fps = n / max(end - begin, 1e-9)
    if window * fps + 1e-6 >= frames or n < frames:  # a video with fewer frames than T repeats them anyway
        return None
    return (
        f"--window {window:g}: {path} has {fps:.3g} frames per second, so a window holds about "
        f"{window * fps:.1f} frames; --frames {frames} needs --window {frames / fps:.3g} or more"
    )


class Windows(IterableDataset):
    """Each video read once, front to back: its windows' clips in chunks of about `chunk` windows,
    {index, start [n], video [n, S, T, 3, H, W], windows, last}; or {index, error}. Still images
    and frame folders are one window each (start 0, end 0). Workers take every W-th video."""

    def __init__(self, paths, frames, window, stride, transform, decoder, chunk):
        self.paths, self.frames, self.window, self.stride = paths, frames, window, stride
        self.transform, self.decoder, self.chunk = transform, decoder, chunk

    def __iter__(self):
        info = get_worker_info()
        mine = range(len(self.paths)) if info is None else range(info.id, len(self.paths), info.num_workers)
        for i in mine:
            yield from self._video(i)

    def _video(self, i: int):
        path, t = self.paths[i], self.frames
        try:
            reader = open_reader(path, self.decoder)
        except (UnreadableVideo, FileNotFoundError) as e:
            yield {"index": i, "error": reason(path, e)}
            return
        try:
            if kind_of(path) != "video":
                x = reader.read(segment_indices(len(reader), t, False))[None]  # [1, T, 3, H, W]
                yield self._item(i, [0.0], [0.0], x, 1, True)
                return
            begin, end = reader.span()
            why = too_short(path, self.window, t, len(reader), begin, end)
            if why:
                yield {"index": i, "error": why}
                return
            yield from self._windows(i, reader, begin, end)
        except UnreadableVideo as e:
            yield {"index": i, "error": str(e)}
        finally:
            reader.close()

    def _windows(self, i: int, reader, begin: float, end: float):
        """The frames every window needs, asked for in time order in batches of about `chunk`
        windows' worth, so the decoder only moves forward; a window leaves as soon as its frames
        are in, and a frame is kept only while a window still to come needs it (windows overlap)."""
        t, span = self.frames, min(self.window, end - begin)
        starts = window_starts(begin, end, self.window, self.stride)
        need = [window_times(s, span, t) for s in starts]
        order = sorted({x for times in need for x in times})
        have: dict[float, torch.Tensor] = {}
        done = 0
        for c in range(0, len(order), self.chunk * t):
            part = order[c : c + self.chunk * t]
            have.update(zip(part, reader.read_at(part)))  # [3, H, W] each
            ready = []
            while done < len(starts) and need[done][-1] <= part[-1]:
                ready.append(done)
                done += 1
            if ready:
                x = torch.stack([torch.stack([have[x] for x in need[w]]) for w in ready])  # [n, T, 3, H, W]
                ends = [min(starts[w] + self.window, end) for w in ready]
                yield self._item(i, [starts[w] for w in ready], ends, x, len(starts), done == len(starts))
            if done < len(starts):
                have = {x: f for x, f in have.items() if x >= need[done][0]}

    def _item(self, i, starts, ends, x, windows, last):
        video = torch.stack([self.transform(c) for c in x])  # [n, S, T, 3, H, W]
        return {"index": i, "start": starts, "end": ends, "video": video, "windows": windows, "last": last}


def segments(windows: list[dict]) -> list[dict]:
    """Consecutive windows with the same top label -> {start, end, label, score (the mean of its
    windows' top scores), windows}. A boundary lies halfway between the centres of the two windows
    it separates; the first segment starts with the first window, the last ends with the last.

    A label that wins a single window between two others is a transition, not an event: a window
    that straddles two actions mixes their frames, and the mix can resemble a third class. Its
    window goes to its neighbours, the boundary at its centre (they merge if they agree)."""
    ws = sorted((w for w in windows if w.get("labels")), key=lambda w: w["start"])
    runs: list[list[dict]] = []
    for w in ws:
        if runs and runs[-1][0]["labels"][0] == w["labels"][0]:
            runs[-1].append(w)
        else:
            runs.append([w])
    centre = lambda w: (w["start"] + w["end"]) / 2  # noqa: E731
    cuts: list[float] = []  # boundary between runs[i] and runs[i + 1]
    kept: list[list[dict]] = []
    for n, run in enumerate(runs):
        if 0 < n < len(runs) - 1 and len(run) == 1 and kept and len(cuts) < len(kept):
            cuts.append(centre(run[0]))  # a transition window: the boundary at its centre
            continue
        if kept:
            if len(cuts) < len(kept):
                cuts.append((centre(kept[-1][-1]) + centre(run[0])) / 2)
            if kept[-1][0]["labels"][0] == run[0]["labels"][0]:  # both sides of a transition agree
                kept[-1] += run
                cuts.pop()
                continue
        kept.append(run)
    out = []
    for n, run in enumerate(kept):
        scores = [w["scores"][0] for w in run]
        out.append(
            {
                "start": round(run[0]["start"] if n == 0 else cuts[n - 1], 3),
                "end": round(run[-1]["end"] if n == len(kept) - 1 else cuts[n], 3),
                "label": run[0]["labels"][0],
                "score": round(sum(scores) / len(scores), 6),
                "windows": len(run),
            }
        )
    return out


# ---------------------------------------------------------------- the run
def predict(cfg) -> list[dict]:
    """Top-k labels and scores per input (with --window: per window, and the segments); an input
    that does not read gets its error instead. Rows go to --out as they are scored."""
    with hold(cfg.out, "--out", "predict") if cfg.out else nullcontext():
        return _predict(cfg)


def _predict(cfg) -> list[dict]:
    paths = gather(cfg.files)
    decoder = auto.decoder(cfg.decoder, quiet=True)
    rows = Rows(cfg.out, cfg.top_k, cfg.window is not None, cfg.resume)
    try:
        todo = [p for p in paths if p not in rows.old]
        if rows.old:
            had = count(len(paths) - len(todo), "input")
            say(f"--resume: {had} already in {cfg.out}, {len(todo)} to score")
        fresh: dict[str, list[dict]] = {}
        if todo:
            ckpt = read_checkpoint(cfg.checkpoint) if cfg.checkpoint else None
            if cfg.window is not None:  # before the model is built: a refusal costs nothing
                _first_fits(cfg, todo, frames_for(cfg, ckpt), decoder)
            model, classes, frames, scale, source = scorer(cfg, paths, ckpt)
            device = DeviceConfig(accelerator=cfg.accelerator, precision=cfg.precision)
            fabric = make_fabric(device, inference=True, tell_bf16=True)
            score = Score(fabric.setup_module(model), fabric, classes, min(cfg.top_k, len(classes)))
            clips, crops = cfg.views
            transform = EvalTransform(preprocess_of(model), crops, scale)
            workers = min(auto.workers(cfg.workers), len(todo))
            if cfg.window is None:
                samples = [Sample(p, -1) for p in todo]
                ds = ClipDataset(
                    samples, frames, transform, train=False, views=(clips, 1), decoder=decoder, warn=False
                )
                run = _whole(loader(ds, cfg.batch_size, False, workers, 0, 0, 1), todo, score, rows)
            else:
                stride = cfg.stride or cfg.window / 2
                ds = Windows(todo, frames, cfg.window, stride, transform, decoder, cfg.batch_size)
                dl = DataLoader(
                    ds,
                    batch_size=None,
                    prefetch_factor=2 if workers else None,
                    **loader_args(workers),
                )
                run = _windowed(dl, todo, score, rows)
            what = f"predicting {count(len(todo), 'input')} with {source}"
            with bar(len(todo), what, lines=True) as tick:  # in a pipe: a line each tenth
                for path, got in run:
                    fresh[path] = got
                    tick()
    finally:
        rows.close()
    done = {**rows.old, **fresh}
    results = [_result(p, done[p], cfg.window is not None) for p in paths if p in done]
    if cfg.out:
        what = "window" if cfg.window is not None else "input"
        rows_out = sum(len(r.get("windows", [r])) for r in results)
        wrote(cfg.out, f"{count(rows_out, 'row')}, one per {what}")
    if cfg.window is not None:
        if cfg.out:
            _write_segments(results, cfg.out)
            wrote(segments_path(cfg.out), "the segments of each video")
        if cfg.plot:
            from tkvr.run.plots import plot_timeline  # deferred: matplotlib, only for --plot

            plot_timeline(results, cfg.plot)
            wrote(cfg.plot, "the top labels' scores over time and the segments")
    return results


@dataclass
class Score:
    """The model on its device and what its scores mean: clips -> rows of top-k labels."""

    model: torch.nn.Module
    fabric: object
    classes: list[str]
    k: int

    def __call__(self, video: torch.Tensor) -> list[dict]:
        """[B, S, T, 3, H, W] -> B rows {labels, scores}: the crops' video embeddings averaged,
        then scored (as eval's default view average)."""
        inner = unwrap(self.model)
        x = video.to(self.fabric.device, non_blocking=True)
        b, s = x.shape[:2]
        with torch.no_grad(), self.fabric.autocast():
            e = inner.embed(x.flatten(0, 1)).float().view(b, s, -1).mean(1)  # [B, D]
        with torch.no_grad():
            top = inner.head(e).float().softmax(-1).topk(self.k)  # [B, k] each
        return [
            {"labels": [self.classes[i] for i in idx], "scores": [round(float(v), 6) for v in val]}
            for val, idx in zip(top.values.cpu(), top.indices.tolist())
        ]


def _whole(dl, paths: list[str], score: Score, rows: Rows):
    """Each input as one clip (or C x S views), batches from the eval loader; yields (path, [row])."""
    score.model.eval()
    for batch in dl:
        good = (batch["bad"] < 0).nonzero().flatten()
        scored = iter(score(batch["video"][good]) if len(good) else [])
        out = []
        for i, bad in zip(batch["index"].tolist(), batch["bad"].tolist()):
            why = batch["why"].get(i, "unreadable")
            out.append({"file": paths[i], **(next(scored) if bad < 0 else {"error": why})})
        rows.write(out)
        for r in out:
            yield r["file"], [r]


def _first_fits(cfg, paths, frames, decoder) -> None:
    """--window too short for --frames is the user's setting, not the file's: said once, before
    any work, from the first video (others of another frame rate get the reason in their row)."""
    first = next((p for p in paths if kind_of(p) == "video"), None)
    if first is None:
        return
    try:
        reader = open_reader(first, decoder)
    except (UnreadableVideo, FileNotFoundError):
        return  # its row says why
    try:
        begin, end = reader.span()
        why = too_short(first, cfg.window, frames, len(reader), begin, end)
    except UnreadableVideo:
        return
    finally:
        reader.close()
    if why:
        raise TkvrError(why)


def _windowed(dl, paths: list[str], score: Score, rows: Rows):
    """Windows along each video, scored in chunks; a video's rows are written together when its
    last window is scored. Yields (path, its rows)."""
    pending: dict[int, list[dict]] = {}
    score.model.eval()
    for item in dl:
        i = item["index"]
        if "error" in item:
            pending.pop(i, None)
            out = [
                {
                    "file": paths[i],
                    "window": 0,
                    "windows": 0,
                    "start": 0.0,
                    "end": 0.0,
                    "error": item["error"],
                }
            ]
        else:
            got = pending.setdefault(i, [])
            for s, e, r in zip(item["start"], item["end"], score(item["video"])):
                got.append(
                    {
                        "file": paths[i],
                        "window": len(got),
                        "windows": item["windows"],
                        "start": round(s, 3),
                        "end": round(e, 3),
                        **r,
                    }
                )
            if not item["last"]:
                continue
            out = pending.pop(i)
        rows.write(out)
        yield paths[i], out


def _result(path: str, got: list[dict], windowed: bool) -> dict:
    """An input's result for --json and the table: its labels, or its windows and segments."""
    if "error" in got[0]:
        return {"file": path, "error": got[0]["error"]}
    if not windowed:
        return {"file": path, "labels": got[0]["labels"], "scores": got[0]["scores"]}
    windows = [{k: r[k] for k in ("start", "end", "labels", "scores")} for r in got]
    return {"file": path, "windows": windows, "segments": segments(windows)}


def segments_path(out: str) -> Path:
    """results.csv -> results.segments.csv (results.jsonl -> results.segments.jsonl)."""
    p = Path(out)
    return p.with_name(f"{p.stem}.segments{p.suffix}")


def _write_segments(results: list[dict], out: str) -> None:
    """The segments of every video in --out, written whole (rebuilt from all rows on --resume)."""
    segs = [{"file": r["file"], **s} for r in results if "segments" in r for s in r["segments"]]
    path = segments_path(out)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["file", "start", "end", "label", "score", "windows"], lineterminator="\n")
        w.writeheader()
        w.writerows(segs)
        text = buf.getvalue()
    else:
        text = "".join(json.dumps(s) + "\n" for s in segs)
    atomic_write_text(text, path)
