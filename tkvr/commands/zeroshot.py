"""tkvr zeroshot: recognise classes never trained on by swapping in their text embeddings.

Rows of the paper's Table 9: the pre-trained model alone ("w/o train"), and after training on the
seen classes ("w/ train"); both evaluated on the unseen classes' validation videos. Protocol
`full` scores all unseen classes at once; `half` scores 10 seeded random halves of them and
reports mean ± std (as Text4Vis / BIKE do).
"""

from __future__ import annotations

import copy
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from tkvr.config import TrainConfig
from tkvr.errors import TkvrError
from tkvr.progress import console, say

HALVES = 10


@dataclass
class ZeroshotConfig:
    train: TrainConfig  # train.data.data is the SEEN spec
    eval_data: str
    no_train: bool = False
    protocol: str = "full"
    json: str | None = None


def halves(num_classes: int, seed: int, n: int = HALVES) -> list[list[int]]:
    """n distinct random halves of range(num_classes), seeded."""
    if num_classes < 2:
        raise TkvrError(f"--protocol half needs at least 2 eval classes, got {num_classes}")
    out, seen, rng = [], set(), random.Random(seed)
    tries = 0
    while len(out) < n and tries < 1000:
        h = tuple(sorted(rng.sample(range(num_classes), num_classes // 2)))
        tries += 1
        if h not in seen:
            seen.add(h)
            out.append(list(h))
    return out


def score(fabric, model, dl, num_classes: int, protocol: str, seed: int) -> dict:
    from tkvr.engine import metrics, predict_scores

    pred = predict_scores(fabric, model, dl)
    if protocol == "full":
        return {"top1": metrics(pred, num_classes)["top1"], "num_samples": int((pred["bad"] < 0).sum())}
    tops = [metrics(pred, num_classes, keep=h)["top1"] for h in halves(num_classes, seed)]
    return {"top1": statistics.fmean(tops), "std": statistics.pstdev(tops), "halves": tops,
            "num_samples": int((pred["bad"] < 0).sum())}


def run(cfg: ZeroshotConfig) -> dict:
    from tkvr.commands import train as train_cmd
    from tkvr.data.loader import workers_for
    from tkvr.data.specs import resolve
    from tkvr.engine import build_for, loader, make_fabric
    from tkvr.model import preprocess_of
    from tkvr.heads import Head
    from tkvr.text import encode_classes

    base = cfg.train
    base.validate()
    if cfg.protocol not in ("full", "half"):
        raise TkvrError(f"--protocol {cfg.protocol!r}: choose full or half")
    seen = resolve(base.data.data, base.data.data_root, base.data.fold)
    unseen = resolve(cfg.eval_data, base.data.data_root, base.data.fold)
    if seen.name.split("@")[0] == unseen.name.split("@")[0]:
        both = set(seen.class_ids()) & set(unseen.class_ids())
        if both:
            ids = seen.class_ids()
            example = seen.classes[ids.index(next(iter(sorted(both, key=str))))]
            raise TkvrError(f"--train {base.data.data} and --eval {cfg.eval_data} share {len(both)} classes "
                            f"(e.g. {example!r}); seen and unseen classes must not overlap")
    if cfg.protocol == "half" and len(unseen.classes) < 2:
        raise TkvrError(f"--protocol half needs at least 2 eval classes; {cfg.eval_data} has {len(unseen.classes)}")
    root = Path(base.run.out)
    templates = base.model.templates or list(unseen.templates)
    rows = {}

    def evaluate_on_unseen(fabric, model):
        from tkvr.commands.train import datasets

        sub = copy.deepcopy(base)
        sub.data.views = base.data.views
        _, val = datasets(sub, unseen, preprocess_of(model))
        workers = workers_for(base.data.workers)
        dl = fabric.setup_dataloaders(loader(val, base.optim.device_batch or 16, False, workers, 0,
                                             fabric.global_rank, fabric.world_size), use_distributed_sampler=False)
        return score(fabric, model, dl, len(unseen.classes), cfg.protocol, base.optim.seed)

    # w/o train: the pre-trained backbone with the unseen classes' text embeddings
    fabric = make_fabric(base.run)
    ucfg = copy.deepcopy(base)
    ucfg.model.head, ucfg.model.templates = "text", templates
    ucfg.run.embeddings = None  # an --embeddings file belongs to the seen classes
    _, model = build_for(ucfg, unseen.classes, templates)
    rows["without_training"] = evaluate_on_unseen(fabric, fabric.setup_module(model))
    say(f"w/o train: top-1 {_fmt(rows['without_training'])} on {len(unseen.classes)} unseen classes")
    if not cfg.no_train:
        tcfg = copy.deepcopy(base)
        tcfg.run.out = str(root / "seen")
        res = train_cmd.run(tcfg, src=seen, fabric=fabric)
        trained = res["trainer"].model
        inner = trained.module if hasattr(trained, "module") else trained
        inner.head = Head(encode_classes(res["backbone"], unseen.classes, templates), "text").to(fabric.device)
        rows["with_training"] = evaluate_on_unseen(res["trainer"].fabric, trained)
        say(f"w/ train: top-1 {_fmt(rows['with_training'])} on {len(unseen.classes)} unseen classes")
    show(rows, cfg.protocol, seen.name, unseen.name)
    out = dict(rows)
    out["protocol"] = cfg.protocol
    out["train"], out["eval"] = seen.name, unseen.name
    if fabric.global_rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        (root / "zeroshot.json").write_text(json.dumps(out, indent=1))
        if cfg.json:
            Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.json).write_text(json.dumps(out, indent=1))
    return out


def _fmt(r: dict) -> str:
    return f"{r['top1']:.2f}%" + (f" ± {r['std']:.2f}" if "std" in r else "")


def show(rows: dict, protocol: str, seen: str, unseen: str) -> None:
    from rich.table import Table

    t = Table(title=f"zero-shot: train {seen}, eval {unseen} ({protocol} protocol)")
    t.add_column("row")
    t.add_column("top-1 %", justify="right")
    names = {"without_training": "w/o train (pre-trained)", "with_training": "w/ train on seen classes"}
    for k, r in rows.items():
        t.add_row(names[k], _fmt(r).rstrip("%"))
    console().print(t)
