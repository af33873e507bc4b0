"""The paper's figures from files tkvr writes (`tkvr plot`, and `embed --plot`).

  correlation  Figure 1: the inter-class correlation map W·Wᵀ of a classifier, from an
               embeddings file or from a run's (or checkpoint's) head, a learned one included
               (its rows normalised first, so the map shows cosines like the others).
  fractions    Figure 3: top-1 against the label fraction, one curve per head, from runs
               (a folder of runs counts as all the runs inside it); seeds of one point averaged.
  loss         Figure 4: training loss against step, one curve per run, from each steps.csv.

Every function writes the image (the format follows the suffix: .png, .svg, .pdf) and returns
the numbers it drew, so they can be checked.
"""

from __future__ import annotations

import io
import math
import random
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    read_yaml,
    safe_load,
)
from tkvr.base.table import read_table
from tkvr.data.classes import resolve_classes
from tkvr.run.checkpoint import read_checkpoint


def _pyplot():
    try:
        import matplotlib  # deferred: only figures need matplotlib (slow to import)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred: only figures need matplotlib (slow to import)
    except ImportError:
        raise TkvrError("plotting needs matplotlib: pip install 'tkvr[plot]'") from None
    return plt


def _save(fig, plt, path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, dpi=120, format=Path(path).suffix[1:])
    plt.close(fig)
    atomic_write_bytes(buf.getvalue(), Path(path))


def plot_correlation(embeddings, classes: list[str], path, title: str = ""):
    """The map of `embeddings` [C, D] (rows L2-normalised here) -> the [C, C] cosines drawn."""
    return plot_correlations([(embeddings, title)], classes, path)[0]


def cosines(embeddings) -> torch.Tensor:
    w = F.normalize(embeddings.detach().float().cpu(), dim=-1)
    return w @ w.T  # [C, C]


def plot_correlations(panels, classes: list[str], path) -> list[torch.Tensor]:
    """Panels side by side, each (embeddings [C, D] of the same classes, title): the paper's
    Figure 1 has two, the text embeddings left and a learned head right."""
    plt = _pyplot()
    sims = [cosines(e) for e, _ in panels]
    c = len(classes)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, sim, (_, title) in zip(axes[0], sims, panels):
        im = ax.imshow(sim.numpy(), cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
        fig.colorbar(im, ax=ax, label="cosine similarity")
        if c <= 30:
            ax.set_xticks(range(c), classes, rotation=90, fontsize=6)
            ax.set_yticks(range(c), classes, fontsize=6)
        ax.set_title(title or f"inter-class correlation ({c} classes)")
    _save(fig, plt, path)
    return sims


def pick_classes(classes: list[str], pick: str, seed: int) -> tuple[list[int], str]:
    """(class ids in dataset order, how they were chosen) for --pick: all, N (a seeded draw of N:
    random.Random(seed).sample over the ids), a file of names (one a line) or names 'a,b,c'."""
    if pick == "all":
        return list(range(len(classes))), f"all {len(classes)}"
    if pick.strip().isdigit():
        n = int(pick)
        if n > len(classes):
            raise TkvrError(f"--pick {n}: the head holds only {len(classes)} classes")
        return sorted(
            random.Random(seed).sample(range(len(classes)), n)
        ), f"a draw of {n} of {len(classes)}, seed {seed}"
    names = resolve_classes(pick, "--pick")  # a labels file or 'a,b,c'
    where = {name: i for i, name in enumerate(classes)}
    missing = [x for x in names if x not in where]
    if missing:
        raise TkvrError(f"--pick: {missing[0]!r} is not a class of the head (e.g. {classes[0]!r})")
    if len(set(names)) < 2:
        raise TkvrError("--pick: name 2 or more distinct classes")
    return sorted({where[x] for x in names}), f"{len(set(names))} named"


def plot_figure1(inputs: list[str], out: str, pick: str = "all", seed: int = 0) -> dict:
    """tkvr plot correlation: one head, or two side by side (the same classes, by name)."""
    heads = [checked_head(x) for x in inputs]
    classes = heads[0][1]
    for w, names, _ in heads[1:]:
        if set(classes) - set(names):
            odd = sorted(set(classes) - set(names))[0]
            raise TkvrError(
                f"{inputs[1]}: has no class {odd!r} of {inputs[0]}; the panels need the same classes"
            )
    ids, how = pick_classes(classes, pick, seed)
    chosen = [classes[i] for i in ids]
    panels = []
    for w, names, title in heads:
        rows = [names.index(x) for x in chosen]
        panels.append((w[rows], f"{title}: {len(chosen)} classes"))
    sims = plot_correlations(panels, chosen, out)
    listed = Path(out).with_suffix(".classes.txt")
    atomic_write_text("".join(x + "\n" for x in chosen), listed)
    return {"classes": chosen, "picked": how, "classes_file": str(listed), "similarity": sims}


def plot_confusion(confusion, classes: list[str], path, title: str = ""):
    """The confusion matrix [true, predicted], each row divided by its videos (a row of a class
    with no videos stays 0)."""
    plt = _pyplot()
    m = confusion.float()
    rows = m.sum(1, keepdim=True).clamp(min=1)
    c = len(classes)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow((m / rows).numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of the true class's videos")
    if c <= 30:
        ax.set_xticks(range(c), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(c), classes, fontsize=6)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true class")
    ax.set_title(title or f"confusion ({c} classes)")
    _save(fig, plt, path)


def plot_timeline(results: list[dict], path, videos: int = 4, labels: int = 5):
    """tkvr predict --window: per video (the first `videos`), the scores over time of the labels
    that are top-1 somewhere (at most `labels`, the most frequent), one point per window centre
    (a label outside a window's top-k is drawn at 0), and the segments as a band below 0, under the
    curves; the legend beside the axes, off the curves."""
    plt = _pyplot()
    shown = [r for r in results if r.get("windows")][:videos]
    if not shown:
        raise TkvrError(f"--plot {path}: no video was scored in windows, nothing to draw")
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.6 * len(shown)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, r in zip(axes[:, 0], shown):
        tops = [w["labels"][0] for w in r["windows"]]
        names = sorted(set(tops), key=lambda n: -tops.count(n))[:labels]
        colour = {n: colours(i % 10) for i, n in enumerate(names)}
        t = [(w["start"] + w["end"]) / 2 for w in r["windows"]]
        for n in names:
            y = [dict(zip(w["labels"], w["scores"])).get(n, 0.0) for w in r["windows"]]
            ax.plot(t, y, marker=".", color=colour[n], label=n)
        for s in r["segments"]:  # the band: scores are >= 0, so it never covers a curve
            ax.fill_between([s["start"], s["end"]], -0.13, -0.04, color=colour.get(s["label"], "0.6"), lw=0)
        ax.set_ylim(-0.15, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.axhline(0, color="0.8", lw=0.5)
        ax.set_ylabel("score")
        ax.set_title(Path(r["file"]).name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    axes[-1, 0].set_xlabel("time (s); bands: segments")
    _save(fig, plt, path)


def head_of(where: str):
    """(matrix [C, D], classes, title) of an embeddings file, a checkpoint or a run directory."""
    p = Path(where)
    if p.is_file() and p.suffix == ".pt":
        data = safe_load(p, "input")
        if isinstance(data, dict) and "embeddings" in data and "classes" in data:
            return (
                data["embeddings"],
                list(data["classes"]),
                f"{data.get('head', 'text')} embeddings, {p.name}",
            )
    if not p.exists():
        raise TkvrError(f"{where}: no such file or run directory")
    ckpt = read_checkpoint(where, "--checkpoint")
    w = ckpt["model"].get("head.weight")
    if not isinstance(w, torch.Tensor):
        raise TkvrError(f"{where}: the checkpoint holds no head matrix")
    return w, list(ckpt["classes"]), f"{ckpt['config']['model']['head']} head, {p.name}"


def checked_head(where: str):
    """head_of, with the matrix checked: [C, D] with C >= 2 finite rows, one class name each."""
    w, classes, title = head_of(where)
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] < 2 or w.shape[1] < 1:
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise TkvrError(f"{where}: the head matrix is {shape}; a correlation needs [classes >= 2, width]")
    if len(classes) != w.shape[0]:
        raise TkvrError(f"{where}: {len(classes)} class names for {w.shape[0]} rows")
    if not torch.isfinite(w.float()).all():
        raise TkvrError(f"{where}: the head matrix holds NaN or infinite values")
    return w, classes, title


def _runs(inputs: list[str], holding: str = "report.json") -> list[Path]:
    """Run directories (holding report.json, or `holding`: metrics.csv draws a run still going)
    named, or found one level inside a named folder."""
    runs = []
    for where in inputs:
        p = Path(where)
        if (p / holding).is_file():
            runs.append(p)
            continue
        inside = sorted(q.parent for q in p.glob(f"*/{holding}")) if p.is_dir() else []
        if not inside:
            done = "a finished run" if holding == "report.json" else "a run"
            raise TkvrError(f"{where}: not {done} (no {holding}) nor a folder of runs")
        runs += inside
    return runs


def _config(run: Path) -> dict:
    return read_yaml(run / "config.yaml", "run config") if (run / "config.yaml").is_file() else {}


def _field(d: dict, group: str, key: str, default):
    """config.yaml's group.key, or `default` where the file does not hold it."""
    inner = d.get(group)
    return inner.get(key, default) if isinstance(inner, dict) else default


def plot_fractions(inputs: list[str], path) -> dict:
    """{head: [(fraction, mean top-1, sample std, n runs), ...]} drawn as one curve per head."""
    points: dict[str, dict[float, list[float]]] = {}
    for run in _runs(inputs):
        cfg = _config(run)
        report = read_json(run / "report.json", "run report")
        if not report.get("final"):
            raise TkvrError(f"{run}: its report has no final validation; it cannot be a point of the curve")
        head = str(_field(cfg, "model", "head", "?"))
        try:
            frac = float(_field(cfg, "data", "label_fraction", 1.0))
            top1 = float(report["final"]["top1"])
        except (KeyError, TypeError, ValueError):
            raise TkvrError(
                f"{run}: report.json's final top1 or config.yaml's label_fraction is not a number; "
                "was the file edited or cut short?"
            ) from None
        if not (0 < frac <= 1 and math.isfinite(top1)):
            raise TkvrError(f"{run}: label fraction {frac} or top-1 {top1} is out of range")
        points.setdefault(head, {}).setdefault(frac, []).append(top1)
    curves = {
        h: [
            (f, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
            for f, v in sorted(pts.items())
        ]
        for h, pts in sorted(points.items())
    }
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = {"text": "vision-text (text head)", "learned": "vision-only (learned head)"}
    for head, pts in curves.items():
        ax.errorbar(
            [p[0] * 100 for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            capsize=3,
            label=names.get(head, f"{head} head"),
        )
    ax.set_xlabel("labelled training data (%)")
    ax.set_ylabel("top-1 (%)")
    ax.legend()
    _save(fig, plt, path)
    return curves


def plot_loss(inputs: list[str], path) -> dict:
    """{run label: [(step, loss), ...]} from each run's steps.csv, one curve per run."""
    curves = {}
    for run in _runs(inputs):
        steps = run / "steps.csv"
        if not steps.is_file():
            raise TkvrError(f"{run}: no steps.csv")
        table = read_table(steps, "steps log", {"step": int, "loss": float})
        rows = [
            (r["step"], r["loss"])
            for r in table
            if isinstance(r["loss"], float) and isinstance(r["step"], int)
        ]
        head = str(_field(_config(run), "model", "head", "?"))
        curves[f"{run.name} ({head} head)"] = rows
    _draw_lines(curves, path, "step", "training loss")
    return curves


def plot_accuracy(inputs: list[str], path) -> dict:
    """{run label: [(epoch, val top-1), ...]} from each run's metrics.csv (the epochs that were
    validated), one curve per run: validation accuracy over the epochs."""
    curves = {}
    for run in _runs(inputs, "metrics.csv"):
        table = read_table(run / "metrics.csv", "metrics log", {"epoch": int, "val_top1": float})
        rows = [(r["epoch"], r["val_top1"]) for r in table if isinstance(r["val_top1"], float)]
        if not rows:
            raise TkvrError(f"{run}: metrics.csv holds no validated epoch yet")
        head = str(_field(_config(run), "model", "head", "?"))
        curves[f"{run.name} ({head} head)"] = rows
    _draw_lines(curves, path, "epoch", "validation top-1 (%)", marker="o")
    return curves


def _draw_lines(curves: dict, path, x: str, y: str, marker: str | None = None) -> None:
    """One line per run ({label: [(x, y), ...]}) over whole-number x (steps, epochs)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, rows in curves.items():
        ax.plot([r[0] for r in rows], [r[1] for r in rows], marker=marker, label=label)
    from matplotlib.ticker import MaxNLocator  # deferred: only figures need matplotlib (slow to import)

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    _save(fig, plt, path)


def plot(figure: str, inputs: list[str], out: str, pick: str = "all", seed: int = 0):
    """`tkvr plot`: draw one figure; returns what it drew."""
    if figure == "correlation":
        return plot_figure1(inputs, out, pick, seed)
    if figure == "fractions":
        return plot_fractions(inputs, out)
    if figure == "accuracy":
        return plot_accuracy(inputs, out)
    return plot_loss(inputs, out)


def draw(cfg) -> object:
    """`tkvr plot` from its settings (cfg: PlotConfig)."""
    return plot(cfg.figure, cfg.inputs, cfg.out, cfg.pick, cfg.seed)
