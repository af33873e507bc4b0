"""Scoring a checkpoint on a split (the library side of `tkvr eval`), features of a split, the
resolved automatic settings a report records, and predictions of a finished run.
"""

from __future__ import annotations

from lightning_fabric import Fabric

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_write_text
from tkvr.base.progress import bar, wrote
from tkvr.base.table import line
from tkvr.data.loader import eval_loader, eval_set, loader
from tkvr.data.settings import views_text
from tkvr.data.specs import resolve
from tkvr.data.transforms import input_size
from tkvr.data.video import Reading
from tkvr.model.backbones import backbone_weights
from tkvr.model.cost import cost_of, costs
from tkvr.model.video_model import preprocess_of
from tkvr.run import auto
from tkvr.run.checkpoint import config_of, load_model, read_checkpoint, weights_note
from tkvr.run.launch import make_fabric
from tkvr.run.metrics import evaluate, extract_features, predict_scores
from tkvr.run.plots import plot_confusion


def split_features(model, src, split: str, frames: int, workers: int = 0, test_scale: float = 1.0):
    """(features [N, D], labels [N]) of one split of a resolved data source through `model`
    (one view, one CPU process): for analyses of a model's features, such as the toy world's
    premise checks."""

    fabric = Fabric(accelerator="cpu", devices=1)
    reading = Reading.of(src, auto.decoder(quiet=True))
    ds = eval_set(src.split(split), reading, frames, preprocess_of(model), (1, 1), test_scale)
    return extract_features(fabric, model, eval_loader(fabric, ds, 32, workers))


def evaluate_checkpoint(cfg, fabric=None) -> dict:
    """Score a checkpoint on a split (cfg: EvalConfig): the report `tkvr eval` shows and writes.
    Data, root and fold default to the checkpoint's; other classes than the checkpoint's need
    --labels data (their names are embedded and swapped in)."""

    ckpt = read_checkpoint(cfg.checkpoint)
    trained = ckpt["config"]["data"]
    s = cfg.source
    fold = s.fold_or(trained["fold"] or 1)  # unset: the fold the checkpoint was trained on
    if not (s.data or trained["data"]):
        raise TkvrError(
            f"--checkpoint {cfg.checkpoint} names no dataset (converted with --labels): give --data to score"
        )
    src = resolve(s.data or trained["data"], s.data_root or trained["data_root"], fold, write=not cfg.dry_run)
    classes = None
    if src.classes != ckpt["classes"]:
        if cfg.labels != "data":
            raise TkvrError(
                f"--data {src.name}: its {len(src.classes)} classes differ from the checkpoint's "
                f"{len(ckpt['classes'])}; pass --labels data to embed the data's class names with "
                "the checkpoint's text encoder (zero-shot)"
            )
        classes = src.classes
    if cfg.dry_run:
        return eval_plan(cfg, ckpt, src, fold, swapped=classes is not None)
    tcfg, _, model = load_model(ckpt, classes)
    reading = Reading.of(src, auto.decoder(s.decoder), s.decode_device)
    fabric = fabric or make_fabric(cfg.device, inference=True)
    model = fabric.setup_module(model)
    # unset: as the checkpoint's run validated (runs before these settings: their old behaviour)
    test_scale = cfg.test_scale if cfg.test_scale is not None else tcfg.data.test_scale
    average = cfg.view_average or tcfg.data.view_average
    frames, pre = tcfg.model.frames, preprocess_of(model)
    ds = eval_set(src.split(cfg.split), reading, frames, pre, cfg.views, test_scale)
    dl = eval_loader(fabric, ds, cfg.batch_size, auto.workers(s.workers, fabric.world_size))
    # in a pipe (a batch job's log): a line at each tenth of the batches and at least every 30 s
    with bar(len(dl), f"scoring {src.name} {cfg.split} ({views_text(cfg.views)} views)", lines=True) as tick:
        m = evaluate(fabric, model, dl, len(src.classes), None, average, tick)
    cost = costs(model, tcfg.model.frames, input_size(preprocess_of(model)), fabric.device)
    precision, why = auto.precision(cfg.device, inference=True)  # what make_fabric launched
    if fabric.global_rank == 0:
        if cfg.per_class:
            atomic_write_text(per_class_csv(m["confusion"], src.classes), cfg.per_class)
            wrote(cfg.per_class, "accuracy and most-confused class per class (CSV)")
        if cfg.plot:
            plot_confusion(
                m["confusion"],
                src.classes,
                cfg.plot,
                f"{src.name} / {cfg.split}, views {views_text(cfg.views)}",
            )
            wrote(cfg.plot, "the confusion matrix")
    return {
        "top1": m["top1"],
        "top5": m["top5"],
        "mean_class_accuracy": m["mean_class_accuracy"],
        "num_samples": m["num_samples"],
        "views": views_text(cfg.views),
        **cost,
        "test_scale": test_scale,
        "view_average": average,
        "split": cfg.split,
        "data": src.name,
        "fold": fold,
        "checkpoint": ckpt["path"],
        "weights": weights_note(ckpt["path"]),
        "precision": precision,
        "precision_why": why,
        "per_class": {src.classes[c]: acc for c, acc in m["per_class"].items()},
        "confused": confused_pairs(m["confusion"], src.classes),
        "unreadable": [ds.samples[i].path for i in m["unreadable"]],
    }


def confused_pairs(confusion, classes: list[str], n: int = 10) -> list[dict]:
    """The `n` most frequent mistakes: true class, the class taken for it, how many videos, and
    that count as a share of the true class's videos."""
    off = confusion.clone()
    off.fill_diagonal_(0)  # [C, C] mistakes only
    counts, idx = off.flatten().topk(min(n, off.numel()))
    rows = confusion.sum(1)
    c = len(classes)
    return [
        {
            "true": classes[i // c],
            "taken_for": classes[i % c],
            "videos": int(k),
            "share": round(100.0 * int(k) / int(rows[i // c]), 2),
        }
        for k, i in zip(counts.tolist(), idx.tolist())
        if k > 0
    ]


def per_class_csv(confusion, classes: list[str]) -> str:
    """class,samples,top1,taken_for,taken_for_share: one row per class, in class order; the last
    two name the class most often predicted instead (empty when never wrong)."""
    out = [line(["class", "samples", "top1", "taken_for", "taken_for_share"])]
    for c, name in enumerate(classes):
        row = confusion[c]
        n = int(row.sum())
        wrong = row.clone()
        wrong[c] = 0
        k = int(wrong.argmax()) if int(wrong.max()) > 0 else None
        out.append(
            line(
                [
                    name,
                    n,
                    f"{100.0 * int(row[c]) / n:.2f}" if n else "",
                    classes[k] if k is not None else "",
                    f"{100.0 * int(wrong[k]) / n:.2f}" if k is not None else "",
                ]
            )
        )
    return "".join(out)


def eval_plan(cfg, ckpt: dict, src, fold: int, swapped: bool = False) -> dict:
    """eval --dry-run: the checkpoint's settings, what this evaluation would use, and the cost.
    swapped: other class names are embedded, by the text tower of the backbone's own weights
    (found or refused here, as the run would)."""
    tcfg = config_of(ckpt)
    weights = {"model": ckpt["path"]}
    if swapped:
        weights["text"] = backbone_weights(tcfg.model.backbone, tcfg.model.pretrained)
    return {
        **tcfg.to_dict(),
        "weights": weights,
        "auto": auto.automatic(tcfg, cfg.device, inference=True, source=cfg.source),
        "eval": {
            "checkpoint": ckpt["path"],
            "weights": weights_note(ckpt["path"]),
            "data": src.name,
            "split": cfg.split,
            "fold": fold,
            "samples": len(src.split(cfg.split)),
            "views": views_text(cfg.views),
            "test_scale": cfg.test_scale if cfg.test_scale is not None else tcfg.data.test_scale,
            "view_average": cfg.view_average or tcfg.data.view_average,
            "logit_scale": float(ckpt["model"]["head.logit_scale"].exp())
            if "head.logit_scale" in ckpt["model"]
            else None,
        },
        "cost": cost_of(tcfg, len(src.classes)),
    }


def predictions(where: str, workers: int = 0, batch: int = 32):
    """Scores of a run's checkpoint on its own validation split (one view, one CPU process):
    -> (predict_scores dict, data source). For benchmarks and tests that need more than top-1."""

    cfg, _, model = load_model(read_checkpoint(where))
    src = resolve(cfg.data.data, cfg.data.data_root, cfg.data.fold_or())
    reading, d = Reading.of(src, auto.decoder(quiet=True)), cfg.data
    val = eval_set(src.split("val"), reading, cfg.model.frames, preprocess_of(model), d.views, d.test_scale)
    return predict_scores(
        Fabric(accelerator="cpu", devices=1), model, loader(val, batch, False, workers, 0, 0, 1)
    ), src
