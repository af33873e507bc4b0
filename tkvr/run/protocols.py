"""The paper's protocols over ordinary training runs: the few-shot sweep and zero-shot transfer.

few-shot (Table 8): K videos per class for ALL classes, seeded, identical on every rank, the
sample saved in each run directory (sample.json) before it trains; one run per K and seed,
evaluated on the full validation split. Schedule (--shot-schedule): released (the released
few-shot configs at 092ad0a and train.py at 238c07f: the sample repeated floor(split / sample)
times to about the length of the full training split, --epochs epochs; the released code draws
an unseeded sample on every GPU, tkvr one seeded sample for all ranks) or paper (the paper's
text, line 273: --shot-epochs passes over the sample itself).

zero-shot (Table 9): the pre-trained model ("w/o train") and the model trained on the seen
classes ("w/ train"), both scored on the unseen classes' validation videos with the unseen
names swapped in as the classifier (tkvr.model.swap_classes). Protocol `full` scores all unseen
classes at once; `half` scores 10 seeded random halves and reports mean ± std (as later papers do).
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_write_text, read_json, read_text
from tkvr.base.progress import count, say, wrote
from tkvr.base.settings import freeze
from tkvr.data.loader import eval_loader, eval_set
from tkvr.data.sampling import k_shot
from tkvr.data.specs import resolve
from tkvr.data.video import Reading, kind_of
from tkvr.model.backbones import weights_plan
from tkvr.model.cost import cost_of
from tkvr.model.text import run_templates
from tkvr.model.video_model import preprocess_of, swap_classes
from tkvr.run import auto
from tkvr.run.checkpoint import load_model, read_checkpoint, run_model, weights_note
from tkvr.run.launch import make_fabric
from tkvr.run.metrics import predict_scores, protocol_top1
from tkvr.run.settings import ALL_SHOTS
from tkvr.run.training import plan, plan_run_dir, resolve_run
from tkvr.run.training import train as train_run


def named(fn, flag: str, *args):
    """fn(*args), its errors naming `flag` (--train, --eval) where they are about --data."""
    try:
        return fn(*args)
    except TkvrError as e:
        raise (e.renamed(flag) if e.about == ("--data",) else e) from None


def label(k: int) -> str:
    return "all" if k == ALL_SHOTS else str(k)


def read_sample(path: str, train, classes: list[str]) -> list[int]:
    """A saved sample (sample.json of an earlier run, or `path<TAB>class` lines) -> indices."""
    p = Path(path)
    if not p.is_file():
        raise TkvrError(f"--sample {path}: no such file")

    if p.suffix == ".json":
        rows = read_json(p, "--sample").get("samples")
        if not isinstance(rows, list) or not all(
            isinstance(r, list) and all(isinstance(x, str) for x in r) for r in rows
        ):
            raise TkvrError(f"--sample {path}: not a sample file (sample.json of a few-shot run)")
    else:
        rows = [ln.split("\t") for ln in read_text(p, "--sample").splitlines() if ln.strip()]
    where = {s.path: i for i, s in enumerate(train)}
    ids, seen = [], {}
    for n, row in enumerate(rows, 1):
        if len(row) != 2:
            raise TkvrError(f"--sample {path}:{n}: expected a path and a class name")
        sp, cls = row
        if sp in seen:  # a video twice would count as two shots of its class
            raise TkvrError(
                f"--sample {path}:{n}: {sp} is listed twice (first at entry {seen[sp]}); list each video once"
            )
        seen[sp] = n
        if sp not in where:
            raise TkvrError(f"--sample {path}:{n}: {sp} is not in the training split")
        if classes[train[where[sp]].label] != cls:
            raise TkvrError(
                f"--sample {path}:{n}: {sp} is labelled {cls!r} in the sample but "
                f"{classes[train[where[sp]].label]!r} in the dataset"
            )
        ids.append(where[sp])
    return ids


def fewshot(cfg) -> dict[str, dict]:
    """The sweep: K ('1', '3', 'all', ...) -> {top1, std, runs}; fewshot.csv / fewshot.json in --out
    (rank 0). K-shot runs train --shot-epochs over their sample; 'all' trains --epochs."""

    base = copy.deepcopy(cfg.train)  # the sweep's own copy: the caller's settings stay as given
    shots = cfg.shots
    src = resolve(base.data.data, base.data.data_root, base.data.fold_or(), write=not base.run.dry_run)
    # the released few-shot configs (092ad0a): RandAugment for Kinetics-400, none for UCF-101 and HMDB-51
    base.data.randaugment = auto.randaugment(base.data.randaugment, few_shot_on=src.name)
    train = src.split("train")
    labels = [s.label for s in train]
    noun = "image" if train and kind_of(train[0].path) == "image" else "video"
    fixed = read_sample(cfg.sample, train, src.classes) if cfg.sample else None
    for k in shots:  # fail before any training if a K cannot be drawn
        if k != ALL_SHOTS:
            k_shot(labels, k, base.optim.seed, src.classes)
    root = Path(cfg.out)
    if base.run.dry_run:
        sub = copy.deepcopy(base)
        sub.run.out = str(root / "dry_run")
        return {
            **plan(sub, src),
            "fewshot": {
                "shots": [label(k) for k in shots],
                "shot_schedule": cfg.shot_schedule,
                "shot_epochs": cfg.shot_epochs,
                "repeats": cfg.repeats,
                "runs": {label(k): schedule(cfg, k, len(train), k * len(src.classes)) for k in shots},
            },
        }
    fabric = None  # launched by the first run, once it has checked its model and data
    results: dict[int, dict] = {}
    for k in shots:
        tops, partial = [], False
        for r in range(cfg.repeats):
            seed = base.optim.seed + r
            sub = copy.deepcopy(base)
            if k == ALL_SHOTS:  # the fully supervised row: every training sample, --epochs
                ids, name = list(range(len(train))), f"all_seed{seed}"
            else:
                ids = fixed if fixed is not None else k_shot(labels, k, seed, src.classes)
                name = f"{k}shot_seed{seed}"
            plan_k = schedule(cfg, k, len(train), len(ids))
            sub.optim.epochs = plan_k["epochs"]
            sub.run.out, sub.optim.seed = str(root / name), seed
            sample = {
                "dataset": src.name,
                "shots": k,
                "seed": seed,
                "samples": [[train[i].path, src.classes[train[i].label]] for i in ids],
            }

            def save_sample(f, sample=sample, out=Path(sub.run.out)):
                if f.global_rank == 0:
                    atomic_write_text(json.dumps(sample, indent=1), out / "sample.json")

            repeated = ids * plan_k["repeats"]
            say(
                f"{label(k)}-shot, seed {seed}: {count(len(ids), noun)}, {len(repeated)} per epoch, "
                f"{count(sub.optim.epochs, 'epoch')} -> {sub.run.out}"
            )
            res = train_run(sub, src=src, train_ids=repeated, fabric=fabric, on_ready=save_sample)
            fabric = res.fabric
            tops.append(res.metrics["top1"])  # a run --max-steps stopped scores the weights it has
            partial = partial or res.partial
        results[label(k)] = {
            "top1": statistics.fmean(tops),
            "std": statistics.stdev(tops) if len(tops) > 1 else 0.0,  # sample std over the seeds
            "runs": tops,
            **({"partial": True} if partial else {}),  # --max-steps cut its runs short: a smoke run
        }
    if fabric.global_rank == 0:
        atomic_write_text(
            "shots,top1,std,runs,top1_per_run\n"
            + "".join(
                f"{k},{v['top1']:.4f},{v['std']:.4f},{len(v['runs'])},"
                f"{' '.join(f'{t:.4f}' for t in v['runs'])}\n"
                for k, v in results.items()
            ),
            root / "fewshot.csv",
        )
        atomic_write_text(json.dumps(results, indent=1), root / "fewshot.json")
        wrote(root, "one run per K and seed (Kshot_seedN/), the table in fewshot.csv and fewshot.json")
    return results


def schedule(cfg, k: int, split: int, sample: int) -> dict:
    """How one K-shot run of the sweep trains: {epochs, repeats (of the sample per epoch),
    clips_per_epoch}. released: the sample repeated floor(split / sample) times (the released
    train.py at 238c07f), --epochs epochs; paper: the sample once, --shot-epochs epochs. 'all' is the whole
    split for --epochs. --epoch-size sets the clips per epoch of a K-shot run in both.

    >>> from tkvr.commands.fewshot import FewshotConfig
    >>> schedule(FewshotConfig(), 1, 9537, 101)   # UCF-101 split 1, 1-shot, the paper's 200 epochs
    {'epochs': 200, 'repeats': 1, 'clips_per_epoch': 101}
    >>> schedule(FewshotConfig(shot_schedule="released"), 1, 9537, 101)
    {'epochs': 30, 'repeats': 94, 'clips_per_epoch': 9494}
    """
    if k == ALL_SHOTS:
        return {"epochs": cfg.train.optim.epochs, "repeats": 1, "clips_per_epoch": split}
    if cfg.epoch_size:
        repeats = max(1, math.ceil(cfg.epoch_size / sample))
    else:
        repeats = max(1, split // sample) if cfg.shot_schedule == "released" else 1
    epochs = cfg.train.optim.epochs if cfg.shot_schedule == "released" else cfg.shot_epochs
    return {"epochs": epochs, "repeats": repeats, "clips_per_epoch": repeats * sample}


def zeroshot(cfg) -> dict:
    """Rows without_training (and with_training unless --no-train), each {top1, num_samples}
    (+ std, halves under --protocol half); zeroshot.json in --out (rank 0)."""

    base = copy.deepcopy(cfg.train)
    base.data.data = cfg.seen
    d = base.data
    write = not base.run.dry_run
    seen = named(resolve, "--train", cfg.seen, d.data_root, d.fold_or(), write)
    unseen = named(resolve, "--eval", cfg.eval_data, d.data_root, d.fold_or(), write)
    # Overlap matters only when the model trains on the seen classes; the pre-trained model alone
    # may score every class of a dataset (plain CLIP zero-shot, Table 10's K = 0).
    if not cfg.no_train and seen.name.split("@")[0] == unseen.name.split("@")[0]:
        both = set(seen.class_ids()) & set(unseen.class_ids())
        if both:
            ids = seen.class_ids()
            example = seen.classes[ids.index(next(iter(sorted(both, key=str))))]
            raise TkvrError(
                f"--train {cfg.seen} and --eval {cfg.eval_data} share {len(both)} classes "
                f"(e.g. {example!r}); seen and unseen classes must not overlap"
            )
    if cfg.protocol == "half" and len(unseen.classes) < 2:
        raise TkvrError(
            f"--protocol half needs at least 2 eval classes; {cfg.eval_data} has {len(unseen.classes)}"
        )
    root = Path(cfg.out)
    base.run.out = str(root / "seen")
    templates = run_templates(base.model, unseen.templates)
    base, seen = resolve_run(base, seen)  # the run's settings, resolved once; frozen from here
    eval_set_ = auto.eval_set(cfg.eval_set, seen.name, unseen.name)
    videos = unseen.every() if eval_set_ == "all" else unseen.split("val")
    if base.run.dry_run:
        resolved = (
            plan(base, seen)
            if not cfg.no_train
            else _resolved_untrained(pretrained_only(base), len(unseen.classes))
        )
        return {
            **resolved,
            "zeroshot": {
                "train": seen.name,
                "eval": unseen.name,
                "eval_set": eval_set_,
                "eval_samples": len(videos),
                "eval_classes": len(unseen.classes),
                "protocol": cfg.protocol,
                "no_train": cfg.no_train,
                "epochs": None if cfg.no_train else base.optim.epochs,
                # what scores the w/o-train row: the pre-trained model with TAP, or a run as it is
                "without_training_temporal": "the checkpoint's"
                if cfg.checkpoint
                else pretrained_only(base).model.temporal,
            },
        }
    reading = Reading.of(unseen, auto.decoder(d.decoder), d.decode_device)

    def score(fabric, model, run=base) -> dict:  # run: whose frames and test scale the model reads
        val = eval_set(videos, reading, run.model.frames, preprocess_of(model), d.views, run.data.test_scale)
        pred = predict_scores(
            fabric,
            model,
            eval_loader(
                fabric, val, base.optim.device_batch or 16, auto.workers(d.workers, fabric.world_size)
            ),
            average=run.data.view_average,
        )
        return protocol_top1(pred, len(unseen.classes), cfg.protocol, base.optim.seed)

    rows = {}
    if cfg.checkpoint:  # w/o train (here): a trained run's model as it is, e.g. a converted released one
        ckpt = read_checkpoint(cfg.checkpoint)
        pre, _, model = load_model(ckpt, unseen.classes, "--eval")  # the unseen names swapped in
        by = {
            **scored_by(pre, trained=True),
            "checkpoint": ckpt["path"],
            "weights": weights_note(ckpt["path"]),
        }
    else:  # w/o train: the pre-trained model alone, the unseen names swapped in
        pre = pretrained_only(base)
        backbone, model = run_model(pre, seen.classes, base.model.templates)
        swap_classes(
            model, backbone, unseen.classes, templates, base.model.text_encoder, base.model.class_names
        )
        by = scored_by(pre)
    if not cfg.no_train:
        plan_run_dir(base)  # a refused --out must fail now, not after the first row
    # scoring only (--no-train): auto may pick bf16 on a CPU; with training, both rows are scored
    # at the run's precision, so that they differ by the training alone
    fabric = make_fabric(base.device, inference=cfg.no_train)
    precision = auto.precision(base.device, inference=cfg.no_train)[0]
    rows["without_training"] = {
        **score(fabric, fabric.setup_module(model), pre),
        "scored_by": by,
        "precision": precision,
    }
    # no training: nothing was seen; the dataset is named, not the flag (the demo passes none)
    which = f"classes of {cfg.eval_data}" if cfg.no_train else "unseen classes"
    say(f"w/o train: top-1 {fmt(rows['without_training'])} on {len(unseen.classes)} {which}")
    if not cfg.no_train:
        res = train_run(base, src=seen, fabric=fabric)
        swap_classes(
            res.model,
            res.backbone,
            unseen.classes,
            templates,
            base.model.text_encoder,
            base.model.class_names,
        )
        rows["with_training"] = {
            **score(res.fabric, res.model),
            "scored_by": scored_by(base, trained=True),
            "precision": precision,
            **({"partial": True} if res.partial else {}),  # --max-steps cut the training short
        }
        say(f"w/ train: top-1 {fmt(rows['with_training'])} on {len(unseen.classes)} unseen classes")
    out = {**rows, "protocol": cfg.protocol, "train": seen.name, "eval": unseen.name, "eval_set": eval_set_}
    if fabric.global_rank == 0:
        atomic_write_text(json.dumps(out, indent=1), root / "zeroshot.json")
        wrote(root, "the runs and zeroshot.json: both rows")
    return out


def pretrained_only(cfg):
    """The "w/o train" model of Tables 9 and 11 (and Table 10's K = 0): the pre-trained CLIP
    alone, a video embedding the mean of its frame embeddings, whatever --temporal says for the
    training half. A temporal module built now would be untrained: the released T-Trans (238c07f: x +
    Transformer(x + pos), random weights) and TokenT1D's starting shift both change the
    pre-trained embedding before any training."""
    pre = freeze(copy.deepcopy(cfg), False)
    pre.model.temporal = "tap"
    return freeze(pre)


def scored_by(cfg, trained: bool = False) -> dict:
    """What scored a zero-shot row, for its report."""
    m = cfg.model
    return {"backbone": m.backbone, "temporal": m.temporal, "head": "text (unseen names)", "trained": trained}


def _resolved_untrained(pre, classes: int) -> dict:
    """--no-train --dry-run: the settings of the model as it is scored (the pre-trained model with
    TAP), without a run to plan, and its cost."""
    return {
        **pre.to_dict(),
        "weights": weights_plan(pre.model),
        "auto": auto.automatic(pre, inference=True),
        "cost": cost_of(pre, classes),
    }


def fmt(r: dict) -> str:
    return f"{r['top1']:.2f}" + (f" ± {r['std']:.2f}" if "std" in r else "") + "%"
