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

import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_write_text, hold
from tkvr.base.procs import loader_args
from tkvr.base.progress import bar, count, say, wrote
from tkvr.base.rows import Rows
from tkvr.base.table import text as table
from tkvr.data.classes import DEFAULT_TEMPLATES, IMAGE_TEMPLATES, resolve_classes
from tkvr.data.loader import ClipDataset, Scoring, loader
from tkvr.data.specs import Sample
from tkvr.data.toy import TEMPLATES as TOY_TEMPLATES
from tkvr.data.toy import foreign
from tkvr.data.transforms import EvalTransform
from tkvr.data.video import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    Reading,
    UnreadableVideo,
    denied,
    kind_of,
    open_reader,
    why_missing,
)
from tkvr.data.windows import Windows, too_short
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
                ds = ClipDataset(samples, frames, transform, Reading(decoder), Scoring(clips, warn=False))
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
        text = table(["file", "start", "end", "label", "score", "windows"], segs)
    else:
        text = "".join(json.dumps(s) + "\n" for s in segs)
    atomic_write_text(text, path)
