"""tkvr train: fine-tune the visual encoder against a frozen class-embedding matrix."""

from __future__ import annotations

import time
from pathlib import Path

from tkvr.config import TrainConfig
from tkvr.errors import TkvrError
from tkvr.progress import say

MODEL_KEYS = ("backbone", "pretrained", "frames", "temporal", "temporal_layers", "t1d_blocks", "head",
              "unfreeze_head", "templates")


def prepare_run_dir(cfg: TrainConfig) -> Path | None:
    """Check --out / --resume; return the checkpoint to resume from (or None)."""
    out = Path(cfg.run.out)
    last = out / "checkpoints" / "last.pt"
    if cfg.run.resume:
        path = last if cfg.run.resume == "auto" else Path(cfg.run.resume)
        if cfg.run.resume == "auto" and not path.is_file():
            return None  # nothing to resume yet: start fresh
        if not path.is_file():
            raise TkvrError(f"--resume {cfg.run.resume}: no such checkpoint")
        from tkvr.engine import read_checkpoint

        old = TrainConfig.from_dict(read_checkpoint(str(path))["config"])
        diff = [k for k in MODEL_KEYS if getattr(old.model, k) != getattr(cfg.model, k)]
        diff += [k for k in ("data", "fold", "label_fraction") if getattr(old.data, k) != getattr(cfg.data, k)]
        if diff:
            k = diff[0]
            flag = "template" if k == "templates" else k.replace("_", "-")
            raise TkvrError(f"--resume {path}: the checkpoint was trained with a different --{flag} "
                            f"({_get(old, k)!r}, now {_get(cfg, k)!r}); resume with the same settings")
        return path
    if (out / "config.yaml").exists() or last.exists():
        raise TkvrError(f"--out {out} already holds a run; continue it with --resume auto, or choose another --out")
    return None


def _get(cfg, key):
    return getattr(cfg.model, key) if hasattr(cfg.model, key) else getattr(cfg.data, key)


def still_images(cfg: TrainConfig, src) -> None:
    """An image dataset trains 1-frame clips: more frames of one image would only cost time."""
    from tkvr.data.video import kind_of

    first = next(iter(src.splits.values()), [])
    if first and kind_of(first[0].path) == "image" and cfg.model.frames != 1:
        say(f"{src.name} holds still images: --frames {cfg.model.frames} -> 1 (an image is a 1-frame clip)")
        cfg.model.frames = 1


def write_config(cfg: TrainConfig, out: Path) -> None:
    import yaml

    from tkvr.fileio import atomic_write_text

    atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), out / "config.yaml")


def datasets(cfg: TrainConfig, src, preprocess: dict, train_ids: list[int] | None = None):
    """Train and val ClipDatasets for a resolved data source."""
    from tkvr.data.loader import ClipDataset
    from tkvr.data.sampling import label_fraction, parse_views
    from tkvr.data.transforms import EvalTransform, train_transform
    from tkvr.data.video import pick_decoder

    decoder = pick_decoder(cfg.data.decoder)
    views = parse_views(cfg.data.views)
    train = src.split("train")
    if train_ids is None and cfg.data.label_fraction < 1:
        train_ids = label_fraction([s.label for s in train], cfg.data.label_fraction, cfg.optim.seed)
    if train_ids is not None:
        train = [train[i] for i in train_ids]
    common = dict(decoder=decoder, device=cfg.data.decode_device, frame_template=src.frame_template,
                  frame_start=src.frame_start)
    train_set = ClipDataset(train, cfg.model.frames, train_transform(preprocess, cfg.data.train_crop, src.flip),
                            train=True, **common)
    val_set = ClipDataset(src.split("val"), cfg.model.frames, EvalTransform(preprocess, views[1]), train=False,
                          views=views, **common)
    return train_set, val_set


def run(cfg: TrainConfig, src=None, train_ids: list[int] | None = None, fabric=None) -> dict:
    """Train; `src` / `train_ids` let the protocol commands pass a class subset or a K-shot
    sample, `fabric` an already launched Fabric."""
    from tkvr.data.loader import BadFiles
    from tkvr.data.specs import resolve
    from tkvr.engine import Trainer, build_for, fit_lda_head, make_fabric, write_report
    from tkvr.model import preprocess_of

    cfg.validate()
    out = Path(cfg.run.out)
    src = src or resolve(cfg.data.data, cfg.data.data_root, cfg.data.fold)
    cfg.model.templates = cfg.model.templates or list(src.templates)
    still_images(cfg, src)
    resume = prepare_run_dir(cfg)
    fabric = fabric or make_fabric(cfg.run)
    if fabric.global_rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_config(cfg, out)  # first, so a crashed run still says what it was
    fabric.barrier()
    t0 = time.time()
    backbone, model = build_for(cfg, src.classes, cfg.model.templates)
    if cfg.model.head == "lda" and resume is None:
        fit_lda_head(fabric, cfg, model, src, preprocess_of(model), out)
    train_set, val_set = datasets(cfg, src, preprocess_of(model), train_ids)
    write_samples(train_set.samples, src.classes, out, fabric.global_rank)
    say(f"run {out}: {cfg.model.backbone} + {cfg.model.temporal}, head {cfg.model.head}, {len(src.classes)} classes, "
        f"{len(train_set)} train / {len(val_set)} val samples, {fabric.world_size} device(s)")
    bad = BadFiles(train_set.samples, cfg.data.max_bad_fraction)
    trainer = Trainer(cfg, fabric, model, train_set, val_set, src.classes, out, bad, resume)
    result = trainer.fit()
    if fabric.global_rank == 0:
        if bad.bad:
            (out / "unreadable.txt").write_text("".join(p + "\n" for p in bad.paths()))
            say(f"{len(bad.bad)} unreadable training videos were replaced; listed in {out / 'unreadable.txt'}")
        m = result["metrics"]
        report = {"run": str(out), "wall_s": time.time() - t0, "epochs": trainer.epoch, "steps": trainer.step,
                  "best_top1": trainer.best, "unreadable_train": bad.paths(),
                  "final": {k: m[k] for k in ("top1", "top5", "mean_class_accuracy", "num_samples")} if m else {},
                  "history": result["history"]}
        write_report(out / "report.json", report, cfg.run.command)
        if m:
            say(f"final: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  mean class {m['mean_class_accuracy']:.2f}% "
                f"on {m['num_samples']} val clips; best top-1 {trainer.best:.2f}%")
        say(f"run directory: {out} (config.yaml, checkpoints/, metrics.csv, report.json)")
    return {"trainer": trainer, "backbone": backbone, "metrics": result["metrics"], "history": result["history"]}


def write_samples(samples, classes: list[str], out: Path, rank: int) -> None:
    """The distinct training samples this rank can draw from, `path<TAB>class` a line:
    train_samples.txt on rank 0, train_samples.rank<R>.txt on the others."""
    seen, lines = set(), []
    for s in samples:
        if s.path not in seen:
            seen.add(s.path)
            lines.append(f"{s.path}\t{classes[s.label]}\n")
    name = "train_samples.txt" if rank == 0 else f"train_samples.rank{rank}.txt"
    (out / name).write_text("".join(lines))


