"""tkvr eval: rebuild a model from its checkpoint alone and score a split, with multi-view testing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tkvr.errors import TkvrError
from tkvr.progress import console, say


@dataclass
class EvalConfig:
    checkpoint: str
    data: str | None = None
    data_root: str | None = None
    fold: int | None = None
    split: str = "val"
    views: str = "1x1"
    labels: str | None = None  # 'data': embed the eval data's class names (zero-shot)
    batch_size: int = 16
    workers: int | None = None
    decoder: str = "auto"
    decode_device: str = "cpu"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    json: str | None = None


def load_model(ckpt: dict, classes: list[str] | None = None, flag: str = "--labels"):
    """Rebuild (cfg, backbone, model) from a checkpoint; `classes` swaps in new class names,
    embedded with the backbone's own (pretrained, never fine-tuned) text encoder."""
    from tkvr.config import TrainConfig
    from tkvr.engine import build_for
    from tkvr.heads import Head
    from tkvr.text import encode_classes

    cfg = TrainConfig.from_dict(ckpt["config"])
    weight = ckpt["model"].get("head.weight")
    if weight is None:
        raise TkvrError(f"--checkpoint {ckpt['path']}: no head weights inside (a checkpoint of another model?)")
    backbone, model = build_for(cfg, ckpt["classes"], cfg.model.templates, weights=False, embeddings=weight)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise TkvrError(f"--checkpoint {ckpt['path']} does not fit the model its config describes ({first})") from None
    if classes is not None and classes != ckpt["classes"]:
        if cfg.model.head != "text":
            raise TkvrError(f"{flag}: new class names need a text head; this checkpoint's head is {cfg.model.head}")
        from tkvr.model import build_backbone

        text = build_backbone(cfg.model.backbone, cfg.model.pretrained)  # the text tower's own weights
        model.head = Head(encode_classes(text, classes, cfg.model.templates), "text")
    model.eval()
    return cfg, backbone, model


def run(cfg: EvalConfig) -> dict:
    from tkvr.config import RunConfig, fail_if
    from tkvr.data.loader import ClipDataset, workers_for
    from tkvr.data.sampling import parse_views
    from tkvr.data.specs import resolve
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import pick_decoder
    from tkvr.engine import evaluate, loader, make_fabric, read_checkpoint
    from tkvr.model import preprocess_of

    views = parse_views(cfg.views)
    run_cfg = RunConfig(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                        strategy=cfg.strategy, precision=cfg.precision)
    fail_if(run_cfg.validate())
    ckpt = read_checkpoint(cfg.checkpoint)
    tcfg_data = ckpt["config"]["data"]
    src = resolve(cfg.data or tcfg_data["data"], cfg.data_root or tcfg_data["data_root"],
                  cfg.fold or tcfg_data["fold"])
    classes = None
    if src.classes != ckpt["classes"]:
        if cfg.labels != "data":
            raise TkvrError(f"--data {src.name}: its {len(src.classes)} classes differ from the checkpoint's "
                            f"{len(ckpt['classes'])}; pass --labels data to embed the data's class names with "
                            "the checkpoint's text encoder (zero-shot)")
        classes = src.classes
    tcfg, _, model = load_model(ckpt, classes)
    fabric = make_fabric(run_cfg)
    model = fabric.setup_module(model)
    ds = ClipDataset(src.split(cfg.split), tcfg.model.frames, EvalTransform(preprocess_of(model), views[1]), train=False,
                     views=views, decoder=pick_decoder(cfg.decoder), device=cfg.decode_device,
                     frame_template=src.frame_template, frame_start=src.frame_start)
    workers = workers_for(cfg.workers)
    dl = fabric.setup_dataloaders(loader(ds, cfg.batch_size, False, workers, 0, fabric.global_rank, fabric.world_size),
                                  use_distributed_sampler=False)
    m = evaluate(fabric, model, dl, len(src.classes))
    names = src.classes
    report = {"top1": m["top1"], "top5": m["top5"], "mean_class_accuracy": m["mean_class_accuracy"],
              "num_samples": m["num_samples"], "views": cfg.views, "split": cfg.split, "data": src.name,
              "checkpoint": ckpt["path"], "per_class": {names[c]: acc for c, acc in m["per_class"].items()},
              "unreadable": [ds.samples[i].path for i in m["unreadable"]]}
    if fabric.global_rank == 0:
        show(report)
        if cfg.json:
            Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.json).write_text(json.dumps(report, indent=1))
    return report


def show(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{report['data']} / {report['split']}, views {report['views']}")
    for col in ("top-1 %", "top-5 %", "mean class %", "samples"):
        t.add_column(col, justify="right")
    t.add_row(f"{report['top1']:.2f}", f"{report['top5']:.2f}", f"{report['mean_class_accuracy']:.2f}",
              str(report["num_samples"]))
    console().print(t)
    if report["unreadable"]:
        say(f"{len(report['unreadable'])} unreadable videos left out, e.g. {report['unreadable'][0]}")


def predictions(where: str, workers: int = 0, batch: int = 32):
    """Scores of a run's checkpoint on its own validation split (one view, one CPU process):
    -> (predict_scores dict, data source). For benchmarks and tests that need more than top-1."""
    from lightning_fabric import Fabric

    from tkvr.commands.train import datasets
    from tkvr.data.specs import resolve
    from tkvr.engine import loader, predict_scores, read_checkpoint
    from tkvr.model import preprocess_of

    ckpt = read_checkpoint(where)
    cfg, _, model = load_model(ckpt)
    src = resolve(cfg.data.data, cfg.data.data_root, cfg.data.fold)
    _, val = datasets(cfg, src, preprocess_of(model))
    return predict_scores(Fabric(accelerator="cpu", devices=1), model, loader(val, batch, False, workers, 0, 0, 1)), src
