"""Run checkpoints: save (atomic), find, read (weights_only), rebuild a model from one alone.

A checkpoint is one `state` dict through fabric.save / fabric.load: model (visual encoder,
temporal module, head: the frozen class-embedding matrix is stored once, as the head's weight,
and never enters the optimiser), optimiser, scheduler, epoch, step, RNG states, config, class
names, best top-1. It is written to a temporary file and renamed, so a killed run leaves the
previous checkpoint whole; it carries everything eval and predict need to rebuild the model.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import torch

from tkvr.base.errors import Fault, TkvrError
from tkvr.base.fileio import SEAL, checksum, safe_load
from tkvr.base.settings import RUN_GROUPS, type_problems
from tkvr.data.specs import absolute
from tkvr.model.backbones import build_backbone
from tkvr.model.settings import SHAPE_KEYS
from tkvr.model.video_model import build, swap_classes
from tkvr.run.settings import DeviceConfig, TrainConfig

FORMAT = 1
# "linear": the learned head is a plain linear layer. Checkpoints without this key have the
# earlier learned head (100 · normalise(e) · Wᵀ + b): they evaluate with it, they do not resume.
HEAD_FORM = "linear"
STATE_KEYS = {
    "model",
    "optimizer",
    "scheduler",
    "epoch",
    "step",
    "epoch_complete",
    "partial_epoch",
    "rng",
    "config",
    "classes",
    "best_top1",
    "format",
    "head_form",
    "checksum",
}
# Settings a resumed run must share with its checkpoint: they shape the model or the data.
MODEL_KEYS = (
    *SHAPE_KEYS,
    "head",
    "template_mode",
    "prompt_length",
    "objective",
    "text_online",
    "unfreeze_head",
    "templates",
)
DATA_KEYS = ("data", "fold", "label_fraction")


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seal_holds(ckpt: dict) -> bool:
    """Whether a checkpoint's contents match the checksum written with them (a file from before
    checksums has none: its structure is still checked)."""
    stored = ckpt.get("checksum")
    if stored is None:
        return True
    return stored == checksum(ckpt, plain=str(stored).startswith(SEAL))


def sealed(state: dict) -> dict:
    """`state` as plain data (modules and optimisers as their state dicts) with its checksum."""
    plain = {
        k: v.state_dict() if hasattr(v, "state_dict") and not isinstance(v, dict) else v
        for k, v in state.items()
    }
    return {**plain, "checksum": checksum(plain)}


def save_checkpoint(fabric, path: Path, state: dict) -> None:
    """fabric.save of the sealed state to a temporary name, then an atomic rename by rank 0."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    kept = "the previous one is intact" if path.is_file() else "there was none before it"
    try:
        fabric.save(tmp, sealed(state))
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)  # what a full disk let through: a partial file, of no use
        except OSError:
            pass
        raise Fault(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    fabric.barrier()
    if fabric.global_rank == 0:
        if not tmp.is_file():  # Lightning's own atomic save can swallow a write error
            raise Fault(f"cannot write checkpoint {path} (folder not writable, or disk full?); {kept}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fabric.barrier()


def find_checkpoint(where: str, flag: str = "--checkpoint") -> Path:
    """A run directory means its final weights (checkpoints/last.pt); a file means itself. best.pt
    holds the epoch of best validation top-1, picked on the split that eval would then report (the
    test split of most video datasets), so it is scored only when named: RUN/checkpoints/best.pt.
    The released README's test commands score the final model too (d61b34d, lines 189-192)."""
    p = Path(where)
    if p.is_dir():
        for cand in (p / "checkpoints" / "last.pt", p / "last.pt"):
            if cand.is_file():
                return cand
        best = p / "checkpoints" / "best.pt"
        hint = f" (its best.pt is scored when named: {flag} {best})" if best.is_file() else ""
        raise TkvrError(f"{flag} {where}: no checkpoints/last.pt in this folder{hint}")
    if not p.is_file():
        raise TkvrError(f"{flag} {where}: no such file or run directory")
    return p


def weights_note(path: str | Path) -> str:
    """Which weights a checkpoint file holds, and why they were the ones scored: for reports."""
    name = Path(path).name
    if name == "last.pt":
        return "last.pt: the run's final weights (a run directory means these)"
    if name == "best.pt":
        return "best.pt, as named: the epoch of best validation top-1 (picked on the validation split)"
    m = re.fullmatch(r"epoch_(\d+)\.pt", name)
    if m:
        return f"{name}, as named: the weights after epoch {m.group(1)}"
    return f"{name}, as named"


def read_checkpoint(where: str, flag: str = "--checkpoint") -> dict:
    """The checkpoint as plain data (weights_only), checked to be a tkvr checkpoint: its tensors
    against the checksum written with them, its structure and its settings' types."""
    path = find_checkpoint(where, flag) if flag in ("--checkpoint", "--init") else Path(where)
    ckpt = safe_load(path, f"{flag} file")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "config" not in ckpt:
        raise TkvrError(
            f"{flag} {path} is not a tkvr checkpoint (a run's checkpoints/best.pt or "
            "last.pt); for backbone weights use --pretrained PATH"
        )
    if not seal_holds(ckpt):
        raise Fault(
            f"{flag} {path}: its contents (weights, class names, settings) do not match the checksum "
            "written with them (the file was "
            "changed or damaged on disk); use another checkpoint of the run or train again"
        )
    problem = structure_problem(ckpt)
    if problem:
        raise TkvrError(f"{flag} {path}: {problem}; was it edited or damaged?")
    ckpt["path"] = str(path)
    return ckpt


def structure_problem(ckpt: dict) -> str | None:
    """What a tkvr checkpoint must hold to be rebuilt and resumed, checked once at load, or None."""
    model = ckpt.get("model")
    if not isinstance(model, dict) or not model:
        return "no 'model' weights in it"
    bad = next(
        (k for k, v in model.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None
    )
    if bad is not None:
        return f"'model' entry {bad!r} is not a tensor"
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' is not a list of class names"
    for key in ("epoch", "step"):
        if key in ckpt and (not isinstance(ckpt[key], int) or isinstance(ckpt[key], bool) or ckpt[key] < 0):
            return f"'{key}' {ckpt[key]!r} is not a count"
    part = ckpt.get("partial_epoch")
    if part is not None and not (
        isinstance(part, dict)
        and isinstance(part.get("position"), int)
        and isinstance(part.get("losses"), torch.Tensor)
        and isinstance(part.get("steps"), list)
        and len(part["steps"]) == len(part["losses"]) == part["position"]
    ):
        return "'partial_epoch' is not the batches, losses and steps of an epoch in hand"
    if ckpt.get("best_top1") is not None and not isinstance(ckpt["best_top1"], (int, float)):
        return f"'best_top1' {ckpt['best_top1']!r} is not a number"
    config = ckpt["config"]
    if not isinstance(config, dict) or not all(isinstance(config.get(g), dict) for g in RUN_GROUPS):
        return "'config' does not hold the groups model, data, optim and run"
    try:
        cfg = config_of(ckpt)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        return f"'config' does not fit tkvr's settings ({type(e).__name__}: {str(e)[:80]})"
    problems = type_problems(cfg)
    if problems:
        return f"'config' setting {problems[0]}"
    return None


# What a run written before a setting existed trained (and evaluates) with: its config.yaml lacks
# the key, and the setting's default today is another value (the released code's).
BEFORE = {
    "model": {"t_trans_form": "near-tap", "t1d_form": "identity", "logit_scale": "100"},
    "data": {"crop_area": 0.25, "grayscale": 0.0, "test_scale": 1.0, "view_average": "scores"},
    "optim": {"decay": "matrices"},
}


def migrate(config: dict) -> dict:
    """A checkpoint's config in today's layout: earlier layouts and settings that did not exist yet."""
    d = {k: dict(v) for k, v in config.items()}
    if "device" not in d:  # checkpoints written before the device group kept these under run
        d["device"] = {k: d["run"].pop(k) for k in list(d["run"]) if k in DeviceConfig.__dataclass_fields__}
    if "embeddings" in d["run"]:
        d["model"].setdefault("embeddings", d["run"].pop("embeddings"))
    for group, olds in BEFORE.items():  # settings a run written before they existed trained with
        for k, v in olds.items():
            d[group].setdefault(k, v)
    if isinstance(d["data"].get("randaugment"), bool):  # once a switch: one draw per clip
        d["data"]["randaugment"] = "clip" if d["data"]["randaugment"] else "off"
    return d


def config_of(ckpt: dict) -> TrainConfig:
    return TrainConfig.from_dict(migrate(ckpt["config"]))


def check_resumable(path: Path, cfg: TrainConfig) -> None:
    """A checkpoint resumes only a run of the same model on the same data."""
    ckpt = read_checkpoint(str(path), "--resume")
    if "converted_from" in ckpt:
        raise TkvrError(
            f"--resume {path}: a converted released model, not a run to continue; start a new run from "
            "it with --init and another --out"
        )
    old = config_of(ckpt)
    if old.model.head == "learned" and ckpt.get("head_form") != HEAD_FORM:
        raise TkvrError(
            f"--resume {path}: this run's learned head is the earlier scaled-cosine form, which "
            "tkvr no longer trains; start a new run (eval and predict still read it)"
        )
    old.data.data = absolute(old.data.data)  # checkpoints before paths were stored absolute
    diff = [("model", k) for k in MODEL_KEYS if getattr(old.model, k) != getattr(cfg.model, k)]
    diff += [("data", k) for k in DATA_KEYS if getattr(old.data, k) != getattr(cfg.data, k)]
    if diff:
        group, k = diff[0]
        flag = "template" if k == "templates" else k.replace("_", "-")
        was, now = getattr(getattr(old, group), k), getattr(getattr(cfg, group), k)
        yaml_path, taken = getattr(cfg, "_from_file", (None, ()))
        if k in taken:  # no flag gave it: the run's config.yaml disagrees with its own checkpoint
            raise TkvrError(
                f"--resume {path}: {yaml_path} says {k}: {now!r}, but the checkpoint was trained with "
                f"{was!r}; was config.yaml edited? set {k}: {was!r} back in it, or train into another --out"
            )
        raise TkvrError(
            f"--resume {path}: the checkpoint was trained with a different --{flag} "
            f"({was!r}, now {now!r}); drop --{flag} (a resumed run keeps its own settings) or "
            "train into another --out"
        )


def start_from(where: str, model) -> Path:
    """--init: load another run's weights into `model` (a run of other classes): everything but
    the class matrix; the logit scale too where both heads have one (the released fine-tuning
    configs start so from the Kinetics-400 model). -> the checkpoint it read."""
    ckpt = read_checkpoint(where, "--init")
    own = model.state_dict()
    keep = [k for k in ckpt["model"] if not k.startswith("head.") or (k == "head.logit_scale" and k in own)]
    state = {k: ckpt["model"][k] for k in keep}
    missing = [k for k in own if k not in state and not k.startswith("head.")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        what = (
            f"missing {missing[0]!r}"
            if missing
            else f"unexpected {unexpected[0]!r}"
            if unexpected
            else f"{wrong[0]!r} of another shape"
        )
        raise TkvrError(
            f"--init {where}: its weights do not fit this run's model ({what}); leave out the model flags "
            "that differ from that run's (they default to its own)"
        )
    model.load_state_dict(state, strict=False)
    return Path(ckpt["path"])


def run_model(cfg: TrainConfig, classes: list[str], templates: list[str], **kw):
    """(Backbone, VideoModel) of a run's settings: the model group, with the run's seed and
    gradient checkpointing (`kw`: build's weights, embeddings, cosine_learned)."""
    return build(
        cfg.model,
        classes,
        templates,
        seed=cfg.optim.seed,
        grad_checkpointing=cfg.optim.grad_checkpointing,
        **kw,
    )


def load_model(ckpt: dict, classes: list[str] | None = None, flag: str = "--labels"):
    """Rebuild (cfg, backbone, model) from a checkpoint alone; `classes` swaps in new class names,
    embedded with the backbone's own (pretrained, never fine-tuned) text encoder."""

    cfg = config_of(ckpt)
    weight = ckpt["model"].get("head.weight")
    if weight is None:
        raise TkvrError(
            f"--checkpoint {ckpt['path']}: no head weights inside (a checkpoint of another model?)"
        )
    backbone, model = run_model(
        cfg,
        ckpt["classes"],
        cfg.model.templates,
        weights=False,
        embeddings=weight,
        cosine_learned=ckpt.get("head_form") != HEAD_FORM,
    )
    state = ckpt["model"]
    if "head.logit_scale" not in state and getattr(model.head, "logit_scale", None) is not None:
        # written before the scale was a parameter: the head scored at the fixed value its config
        # now resolves to (100)
        state = {**state, "head.logit_scale": model.head.logit_scale.detach().clone()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise TkvrError(
            f"--checkpoint {ckpt['path']} does not fit the model its config describes ({first})"
        ) from None
    if classes is not None and classes != ckpt["classes"]:
        if cfg.model.head != "text":
            raise TkvrError(
                f"{flag}: new class names need a text head; this checkpoint's head is {cfg.model.head}"
            )
        text = build_backbone(cfg.model.backbone, cfg.model.pretrained)  # the text tower's own weights
        swap_classes(model, text, classes, cfg.model.templates, cfg.model.text_encoder, cfg.model.class_names)
    model.eval()
    return cfg, backbone, model
