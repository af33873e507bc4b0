"""tkvr fewshot: K-shot C-way training over all classes, a sweep over K, mean ± std over seeds.

Each (K, seed) is an ordinary training run (the engine's loop) on a K-shot sample of the
training split, repeated to a normal epoch length, evaluated on the full validation split.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tkvr.config import TrainConfig
from tkvr.errors import TkvrError
from tkvr.progress import console, say


@dataclass
class FewshotConfig:
    train: TrainConfig
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    repeats: int = 1
    sample: str | None = None
    epoch_size: int | None = None  # clips per epoch; default: the size of the full training split
    json: str | None = None


def parse_shots(text: str) -> list[int]:
    try:
        shots = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise TkvrError(f"--shots {text!r} must be a comma list of integers, e.g. 1,2,4") from None
    if not shots or min(shots) < 1:
        raise TkvrError(f"--shots {text!r}: every K must be >= 1")
    return shots


def read_sample(path: str, train, classes: list[str]) -> list[int]:
    """A saved sample (sample.json of an earlier run, or `path<TAB>class` lines) -> indices."""
    p = Path(path)
    if not p.is_file():
        raise TkvrError(f"--sample {path}: no such file")
    if p.suffix == ".json":
        rows = json.loads(p.read_text())["samples"]
    else:
        rows = [ln.split("\t") for ln in p.read_text().splitlines() if ln.strip()]
    where = {s.path: i for i, s in enumerate(train)}
    ids = []
    for n, (sp, cls) in enumerate(rows, 1):
        if sp not in where:
            raise TkvrError(f"--sample {path}:{n}: {sp} is not in the training split")
        if classes[train[where[sp]].label] != cls:
            raise TkvrError(f"--sample {path}:{n}: {sp} is labelled {cls!r} in the sample but "
                            f"{classes[train[where[sp]].label]!r} in the dataset")
        ids.append(where[sp])
    return ids


def run(cfg: FewshotConfig) -> dict:
    from tkvr.commands import train as train_cmd
    from tkvr.data.sampling import k_shot
    from tkvr.data.specs import resolve
    from tkvr.engine import make_fabric
    from tkvr.fileio import atomic_write_text

    base = cfg.train
    base.validate()
    if cfg.repeats < 1:
        raise TkvrError(f"--repeats must be >= 1, got {cfg.repeats}")
    src = resolve(base.data.data, base.data.data_root, base.data.fold)
    train = src.split("train")
    labels = [s.label for s in train]
    for k in cfg.shots:  # fail before any training if a K cannot be drawn
        k_shot(labels, k, base.optim.seed, src.classes)
    root = Path(base.run.out)
    fabric = make_fabric(base.run)
    results: dict[int, dict] = {}
    for k in cfg.shots:
        tops = []
        for r in range(cfg.repeats):
            seed = base.optim.seed + r
            ids = read_sample(cfg.sample, train, src.classes) if cfg.sample else k_shot(labels, k, seed, src.classes)
            out = root / f"{k}shot_seed{seed}"
            sub = copy.deepcopy(base)
            sub.run.out, sub.optim.seed = str(out), seed
            sample = {"dataset": src.name, "shots": k, "seed": seed,
                      "samples": [[train[i].path, src.classes[train[i].label]] for i in ids]}
            if fabric.global_rank == 0:
                atomic_write_text(json.dumps(sample, indent=1), out / "sample.json")
            size = cfg.epoch_size or len(train)
            repeated = ids * max(1, math.ceil(size / len(ids)))  # a normal epoch length
            say(f"{k}-shot, seed {seed}: {len(ids)} videos repeated to {len(repeated)} per epoch -> {out}")
            res = train_cmd.run(sub, src=src, train_ids=repeated, fabric=fabric)
            tops.append(res["metrics"]["top1"])
        results[k] = {"top1": statistics.fmean(tops), "std": statistics.pstdev(tops) if len(tops) > 1 else 0.0,
                      "runs": tops}
    table = {str(k): v for k, v in results.items()}
    if fabric.global_rank != 0:
        return results
    show(results, base.model.head, src.name)
    atomic_write_text("shots,top1,std,runs\n" + "".join(
        f"{k},{v['top1']:.4f},{v['std']:.4f},{' '.join(f'{t:.4f}' for t in v['runs'])}\n" for k, v in results.items()),
        root / "fewshot.csv")
    atomic_write_text(json.dumps(table, indent=1), root / "fewshot.json")
    if cfg.json:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json).write_text(json.dumps(table, indent=1))
    return results


def show(results: dict, head: str, data: str) -> None:
    from rich.table import Table

    t = Table(title=f"few-shot {data}, head {head}: top-1 % (mean ± std over seeds)")
    t.add_column("shots", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("runs", justify="right")
    for k, v in results.items():
        t.add_row(str(k), f"{v['top1']:.2f} ± {v['std']:.2f}", str(len(v["runs"])))
    console().print(t)
