"""A training run from its config: validate, build, then write the run directory and fit.

Everything that can be wrong with a request is found before the first side effect: the flags
(config validation), the data (resolved and split), the run directory (a folder holding a
checkpoint is a run; one without is not), the model (backbone name, weights, embeddings file,
temporal module) and the datasets. Only then is a process launched and `--out` written, so a
corrected rerun never meets a half-made run directory.

Run directory: config.yaml, checkpoints/{last,best}.pt, metrics.csv, steps.csv,
train_samples.txt, report.json, unreadable.txt (when a training video did not read), and for
--head lda its feature cache and matrix.
"""

from __future__ import annotations

import copy
import os
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from tkvr.base.errors import Preempted, TkvrError
from tkvr.base.fileio import atomic_save, atomic_write_text, hold, safe_load
from tkvr.base.progress import count, say
from tkvr.base.settings import freeze
from tkvr.data.loader import BadFiles, datasets, eval_loader, eval_set, loader
from tkvr.data.specs import absolute, resolve
from tkvr.data.transforms import released_scale
from tkvr.data.video import Reading, UnreadableVideo, kind_of
from tkvr.model.backbones import input_size_of, weights_plan
from tkvr.model.cost import cost_of
from tkvr.model.heads import Head, fit_lda
from tkvr.model.text import Made, load_embeddings, run_templates, save_embeddings
from tkvr.model.video_model import check_encoder, preprocess_of
from tkvr.run import auto
from tkvr.run.checkpoint import check_resumable, run_model, start_from
from tkvr.run.engine import Parts, Trainer
from tkvr.run.launch import make_fabric
from tkvr.run.logs import history, write_report
from tkvr.run.metrics import extract_features
from tkvr.run.settings import TrainConfig


@dataclass(kw_only=True)
class TrainResult:
    out: Path
    epochs: int
    steps: int
    best_top1: float
    metrics: dict  # the last validation: top1, top5, mean_class_accuracy, num_samples, ...
    history: list[dict] = field(default_factory=list)  # one row per epoch
    unreadable: list[str] = field(default_factory=list)  # training videos that did not read
    model: object = None  # the trained model (Fabric-wrapped)
    backbone: object = None  # its open_clip backbone (the text tower embeds new class names)
    fabric: object = None
    partial: bool = False  # --max-steps stopped it before its last epoch (a smoke run)


def plan_run_dir(cfg: TrainConfig) -> Path | None:
    """Check --out / --resume without writing; return the checkpoint to resume from (or None)."""
    out = Path(cfg.run.out)
    if out.exists() and not out.is_dir():
        raise TkvrError(f"--out {out} is a file; give a folder for the run")
    last = out / "checkpoints" / "last.pt"
    if cfg.run.resume:
        path = auto.resumed(cfg.run.out, cfg.run.resume)
        if path is None:
            return None  # nothing to resume yet: start fresh
        if not path.is_file():
            raise TkvrError(f"--resume {cfg.run.resume}: no such checkpoint")
        check_resumable(path, cfg)
        return path
    if last.exists() or (out / "checkpoints" / "best.pt").exists():
        raise TkvrError(
            f"--out {out} already holds a run; continue it with --resume auto, or choose another --out"
        )
    return None


def resolve_run(cfg: TrainConfig, src=None) -> tuple[TrainConfig, object]:
    """The run's settings with everything that depends on its data or this machine resolved: fold,
    absolute data paths, templates, --randaugment, --augment and --precision auto, the text
    encoder that made --embeddings, one frame for a still-image dataset. What config.yaml records.
    A frozen copy: `cfg` stays as the user gave it, and no layer changes the run's settings
    afterwards. No side effects. -> (settings, data source). The settings are valid already: the
    command line validates them, scripts use `TrainConfig.from_flags`."""
    src = src or resolve(cfg.data.data, cfg.data.data_root, cfg.data.fold_or(), write=not cfg.run.dry_run)
    run = freeze(copy.deepcopy(cfg), False)
    run.data.fold = cfg.data.fold_or()  # the checkpoint records the fold it was trained on
    run.data.data = absolute(cfg.data.data)  # and a data path that works from anywhere
    if cfg.data.data_root:
        run.data.data_root = os.path.abspath(cfg.data.data_root)
    run.model.templates = run_templates(cfg.model, src.templates)
    run.data.randaugment = auto.randaugment(cfg.data.randaugment)
    if cfg.data.test_scale is None:  # the released rule, recorded as a number where the size is known
        size = input_size_of(cfg.model.backbone, cfg.model.visual)
        run.data.test_scale = released_scale(size) if size else None
    run.data.augment = auto.augment(cfg.data.augment, cfg.device.accelerator)
    run.device.precision = auto.precision_said(cfg.device)
    m = cfg.model
    if m.embeddings and m.head == "text" and m.template_mode != "learn" and not m.text_online:
        made_by = load_embeddings(m.embeddings, flag="--embeddings").get("text_encoder")
        check_encoder(m.text_encoder, m.embeddings, made_by)
        run.model.text_encoder = made_by  # new class names (zero-shot) get the encoder that made the file
    first = next(iter(src.splits.values()), [])
    if first and kind_of(first[0].path) == "image" and cfg.model.frames != 1:
        # an image dataset trains 1-frame clips: more frames of one image would only cost time
        say(f"{src.name} holds still images: --frames {cfg.model.frames} -> 1 (an image is a 1-frame clip)")
        run.model.frames = 1
    return freeze(run), src


def short_clips(cfg: TrainConfig, src, samples) -> None:
    """Say when the first training video has fewer frames than --frames: TSN sampling then takes
    some frames twice, which costs compute and adds nothing (one file opened, nothing else)."""
    for s in samples:
        try:
            reader = Reading.of(src, auto.decoder(cfg.data.decoder, quiet=True)).open(s.path)
            try:
                n = len(reader)
            finally:
                reader.close()
        except (UnreadableVideo, OSError):
            return  # the loader's bad-file handling speaks for unreadable files
        if 1 < n < cfg.model.frames:
            say(
                f"warning: {Path(s.path).name} has {n} frames and --frames is {cfg.model.frames}: "
                f"frames repeat within each clip; --frames {n} or fewer reads each once"
            )


def plan(cfg: TrainConfig, src=None) -> dict:
    """--dry-run: everything train() checks before its first side effect, and the settings it
    would record: config.yaml's keys, `auto:` (what automatic values become here) and `cost:`."""

    cfg, src = resolve_run(cfg, src)
    plan_run_dir(cfg)
    return {
        **cfg.to_dict(),
        "weights": weights_plan(cfg.model),  # what --pretrained (and --visual) load, found or refused
        "auto": auto.automatic(cfg),
        "classes": len(src.classes),
        "train_samples": len(src.split("train")),
        "cost": cost_of(cfg, len(src.classes)),
    }


def train(
    cfg: TrainConfig, src=None, train_ids: list[int] | None = None, fabric=None, on_ready=None
) -> TrainResult:
    """Train; `src` / `train_ids` let the protocols pass a class subset or a K-shot sample,
    `fabric` an already launched Fabric. `on_ready(fabric)` runs once everything has been
    checked, just before the run directory is written (the few-shot sweep writes its sample).
    Rank 0 holds the run folder (fileio.hold) from then to the end: a second tkvr writing it is
    refused."""
    with ExitStack() as held:
        return _train(cfg, src, train_ids, fabric, on_ready, held)


def _train(cfg: TrainConfig, src, train_ids, fabric, on_ready, held: ExitStack) -> TrainResult:
    out = Path(cfg.run.out)
    cfg, src = resolve_run(cfg, src)
    if cfg.optim.warmup >= cfg.optim.epochs:
        say(
            f"warning: --warmup {cfg.optim.warmup:g} >= --epochs {cfg.optim.epochs}: "
            "the learning rate stays on "
            "its warm-up ramp for the whole run; lower --warmup for short runs"
        )
    resume = plan_run_dir(cfg)
    t0 = time.time()
    backbone, model = run_model(cfg, src.classes, cfg.model.templates)
    if cfg.run.init and resume is None:
        say(f"starting from the weights of {start_from(cfg.run.init, model)}")
    train_set, val_set = datasets(
        cfg.data,
        src,
        preprocess_of(model),
        frames=cfg.model.frames,
        seed=cfg.optim.seed,
        reading=Reading.of(src, auto.decoder(cfg.data.decoder), cfg.data.decode_device),
        train_ids=train_ids,
    )
    short_clips(cfg, src, train_set.samples[:1])
    fabric = fabric or make_fabric(cfg.device)
    if fabric.global_rank == 0:
        held.enter_context(hold(out, "--out", "train", folder=True))
        if resume is None:  # again, holding the folder: another run may have written it meanwhile
            resume = plan_run_dir(cfg)  # (a resumed checkpoint was read and checked already)
    if on_ready is not None:
        on_ready(fabric)
    if fabric.global_rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_config(cfg, out)  # first, so a crashed run still says what it was
    fabric.barrier()
    if cfg.model.head == "lda" and resume is None:
        fit_lda_head(fabric, cfg, model, src, train_set.samples, preprocess_of(model), out)
    write_samples(train_set.samples, src.classes, out, fabric.global_rank)
    m = cfg.model
    say(
        f"run {out}: {m.backbone} + {m.temporal}, head {m.head} ({m.template_mode} templates), "
        f"objective {m.objective}, {count(len(src.classes), 'class')}, "
        f"{len(train_set)} train / {len(val_set)} val samples, {count(fabric.world_size, 'device')}"
    )
    if cfg.optim.batch_gather and fabric.world_size == 1:
        say("--batch-gather: one process, nothing to gather; the batch is compared with itself")
    bad = BadFiles(
        train_set.samples,
        cfg.data.max_bad_fraction,
        out / "unreadable.txt" if fabric.global_rank == 0 else None,
    )
    trainer = Trainer(
        cfg, fabric, ready(cfg, fabric, model, train_set, val_set), src.classes, out, bad, resume
    )

    def standing(metrics: dict, past: list[dict] | None = None) -> TrainResult:
        """Where the trainer stands (past: the epochs' rows; None: read from metrics.csv)."""
        return TrainResult(
            out=out,
            epochs=trainer.epoch,
            steps=trainer.step,
            best_top1=trainer.best,
            metrics=metrics,
            history=history(out / "metrics.csv") if past is None else past,
            unreadable=bad.paths(),
            model=trainer.wrapped,
            backbone=backbone,
            fabric=fabric,
        )

    if trainer.epoch >= cfg.optim.epochs:  # a finished run: its report stays as it is
        say(f"{out} has finished its {cfg.optim.epochs} epochs; nothing to train (raise --epochs to go on)")
        return standing({})
    try:
        fit = trainer.fit()
    except (KeyboardInterrupt, Preempted) as e:  # report.json says how far the run got, then the CLI's line
        if fabric.global_rank == 0:
            report = finish(cfg, standing({}), time.time() - t0 + trainer.earlier, interrupted=True)
            if trainer.trackers is not None:
                trainer.trackers.finish(report, interrupted=True)
        if isinstance(e, Preempted):
            fabric.barrier()  # every rank leaves after rank 0's report: none ends the others early
        raise
    rank0 = fabric.global_rank == 0
    result = standing(fit.metrics, None if rank0 else fit.history)
    result.partial = fit.partial
    if rank0:
        report = finish(cfg, result, time.time() - t0 + trainer.earlier)
        if trainer.trackers is not None:
            trainer.trackers.finish(report)
    return result


def finish(cfg: TrainConfig, r: TrainResult, wall: float, interrupted: bool = False) -> dict:
    """unreadable.txt and report.json (rank 0); the command's closing lines are tkvr.commands.train's.
    wall: seconds since the run's start (a resumed run's earlier part included). interrupted: the
    report of a run stopped by Ctrl-C, with the epochs it finished (resume it with --resume auto)."""
    listed = r.out / "unreadable.txt"
    if listed.is_file():  # a resumed run: keep what the earlier part found
        r.unreadable = sorted(set(r.unreadable) | set(listed.read_text(errors="replace").split("\n")) - {""})
    if r.unreadable:
        atomic_write_text("".join(p + "\n" for p in r.unreadable), listed)
        say(
            f"{count(len(r.unreadable), 'unreadable training video')} replaced; "
            f"listed in {r.out / 'unreadable.txt'}"
        )
    m = r.metrics
    devices = r.fabric.world_size if r.fabric is not None else 1
    # the cost column of the paper's Table 6: the run's wall time x every device of the run
    report = {
        "run": str(r.out),
        **({"interrupted": True, "resume": f"tkvr train --out {r.out} --resume auto"} if interrupted else {}),
        # a smoke run: --max-steps stopped it before its last epoch; `final` scores the weights it has
        **({"partial": True, "stopped_by": f"--max-steps {cfg.optim.max_steps}"} if r.partial else {}),
        "wall_s": wall,
        "devices": devices,
        "device_hours": wall * devices / 3600,
        "precision": cfg.device.precision,
        "epochs": r.epochs,
        "steps": r.steps,
        "best_top1": r.best_top1 if r.best_top1 >= 0 else None,  # None: no epoch's validation yet
        "unreadable_train": r.unreadable,
        "final": {k: m[k] for k in ("top1", "top5", "mean_class_accuracy", "num_samples")} if m else {},
        "history": r.history,
    }
    write_report(r.out / "report.json", report, cfg.run.command)
    return report


def ready(cfg: TrainConfig, fabric, model, train_set, val_set) -> Parts:
    """The loaders, optimiser and model of a run, set up with Fabric: what the Trainer receives."""
    o = cfg.optim
    device_batch = o.device_batch or o.batch_size // fabric.world_size
    workers = auto.workers(cfg.data.workers, cfg.device.devices)
    rank, world = fabric.global_rank, fabric.world_size
    train_dl = loader(
        train_set,
        device_batch,
        True,
        workers,
        o.seed,
        rank,
        world,
        drop_last=len(train_set) >= device_batch * world,
    )
    batch_notes(len(train_set), device_batch, world, o.device_batch is not None, bool(o.limit_batches))
    val_dl = loader(val_set, device_batch, False, workers, o.seed, rank, world)
    # Batches stay on the CPU until the loop moves the tensors it needs: the `bad` flags are
    # read on the host every step, and reading them from the device would sync it.
    train_dl, val_dl = fabric.setup_dataloaders(
        train_dl, val_dl, use_distributed_sampler=False, move_to_device=False
    )
    fused = o.fused if o.fused is not None else fabric.device.type == "cuda"
    optimizer = torch.optim.AdamW(
        model.param_groups(o.lr, o.new_lr_ratio, o.weight_decay, o.decay),
        betas=o.betas,
        eps=1e-8,
        fused=fused,
    )
    if cfg.run.compile:
        model.compile_visual()
    wrapped, optimizer = fabric.setup(model, optimizer)
    # Augmentations in the main process (workers=0) draw from the global RNG: seed it per rank.
    torch.manual_seed(o.seed * 1000 + rank)
    random.seed(o.seed * 1000 + rank)
    return Parts(model, wrapped, optimizer, train_dl, val_dl, train_set.mode.augment)


def batch_notes(n: int, device_batch: int, world: int, per_device: bool, limited: bool = False) -> None:
    """Say once what the loader's batch does to a small training set: one short step per epoch, or
    the clips each epoch leaves out (full batches only; which ones changes with every shuffle).
    per_device: the batch was given as --device-batch, so that is the flag to change. limited:
    --limit-batches cuts the epochs anyway (a smoke run): the clips left out are not said."""
    step = device_batch * world
    flag, unit = ("--device-batch", world) if per_device else ("--batch-size", 1)
    batch = f"{flag} {step // unit}" + (f" x {world} devices" if per_device and world > 1 else "")
    if n < step:
        say(
            f"warning: the training set has {count(n, 'clip')}, fewer than one batch ({batch}): each "
            f"epoch is one short step of {n}; give {flag} {max(1, n // unit)} or less for full steps"
        )
        return
    left = n - (n // world // device_batch) * step  # each rank: its equal share, in full batches
    if left and not limited:
        # the largest batch from half this one up that divides the set (and the devices)
        fit = next((b for b in range(step, step // 2 - 1, -world) if b and n % b == 0), None)
        say(
            f"note: {count(left, 'clip')} of {n} left out of each epoch ({batch} takes full batches; "
            "other clips each epoch)" + (f"; {flag} {fit // unit} would use all" if fit else "")
        )


def write_config(cfg: TrainConfig, out: Path) -> None:
    # the groups as resolved (a resumed run keeps them), then what this machine made of its own
    # automatic values (decoder, workers, ...): a resumed run decides those afresh
    record = {**cfg.to_dict(), "auto": auto.automatic(cfg)}
    atomic_write_text(yaml.safe_dump(record, sort_keys=False), out / "config.yaml")


def write_samples(samples, classes: list[str], out: Path, rank: int) -> None:
    """The distinct training samples this rank can draw from, `path<TAB>class` a line:
    train_samples.txt on rank 0, train_samples.rank<R>.txt on the others."""

    seen, lines = set(), []
    for s in samples:
        if s.path not in seen:
            seen.add(s.path)
            lines.append(f"{s.path}\t{classes[s.label]}\n")
    atomic_write_text(
        "".join(lines), out / ("train_samples.txt" if rank == 0 else f"train_samples.rank{rank}.txt")
    )


def fit_lda_head(fabric, cfg: TrainConfig, model, src, samples, preprocess: dict, out: Path):
    """--head lda: pre-trained visual features of up to --lda-samples videos per class of the
    run's own training samples (a K-shot sample, a label fraction: never more than the run may
    see; one centre view each), extracted on every device, cached in the run directory;
    multi-class LDA on them becomes the frozen head."""

    cache = out / "lda_features.pt"
    if cache.is_file():
        data = safe_load(cache, "LDA feature cache")
        feats, labels = data["features"], data["labels"]
        say(f"LDA: {len(feats)} cached features from {cache}")
    else:
        train = list({s.path: s for s in samples}.values())  # distinct: a K-shot sample comes repeated
        by_class: dict[int, list[int]] = {}
        for i, s in enumerate(train):
            by_class.setdefault(s.label, []).append(i)
        rng = random.Random(cfg.optim.seed)
        ids = sorted(
            i for idx in by_class.values() for i in rng.sample(idx, min(len(idx), cfg.model.lda_samples))
        )
        reading = Reading.of(src, auto.decoder(cfg.data.decoder, quiet=True), cfg.data.decode_device)
        ds = eval_set(
            [train[i] for i in ids],
            reading,
            cfg.model.frames,
            preprocess,
            (1, 1),
            cfg.data.test_scale,
        )
        model.to(fabric.device)
        workers = auto.workers(cfg.data.workers, fabric.world_size)
        feats, labels = extract_features(
            fabric, model, eval_loader(fabric, ds, cfg.optim.device_batch or 16, workers)
        )
        if fabric.global_rank == 0:
            atomic_save({"features": feats, "labels": labels}, cache)
        say(
            f"LDA: features of {len(feats)} training videos (<= {cfg.model.lda_samples} per class) -> {cache}"
        )
    w = fit_lda(feats, labels, len(src.classes))
    old = model.head  # the LDA matrix replaces its placeholder; the temperature stays as built
    model.head = Head(
        w,
        "lda",
        trainable=cfg.model.unfreeze_head,
        scale=float(old.scale.detach()),
        learn_scale=old.logit_scale.requires_grad,
    )
    if fabric.global_rank == 0:
        made = Made(cfg.model.backbone, cfg.model.pretrained, head="lda")
        save_embeddings(out / "lda_embeddings.pt", w, src.classes, made)
    return w
