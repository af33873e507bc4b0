"""The one training and evaluation engine every command uses: Fabric, optimiser, schedule, loops,
checkpoints, logs.

Recipe defaults (the paper's official configs): AdamW, lr 5e-6 for the visual encoder and 10x for
new modules (temporal module, inserted temporal convolutions, a learned head); betas (0.9, 0.98);
weight decay 0.2 except norms, biases, embeddings and the class-embedding matrix; cosine schedule
with 5 warm-up epochs, stepped per optimiser step; global batch 128 = device batch x devices x
nodes x accumulation; 30 epochs.

Checkpoints are one `state` dict through fabric.save / fabric.load (`weights_only=True`): model
(visual encoder, temporal module, head: the frozen class-embedding matrix is stored once, as the
head's weight, and never enters the optimiser), optimiser, scheduler, epoch, step, RNG states,
config, class names, best top-1. Written to a temporary file and renamed, so a killed run leaves
the previous checkpoint whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from tkvr.config import TrainConfig
from tkvr.data.loader import workers_for
from tkvr.errors import TkvrError
from tkvr.progress import TrainProgress, say

CKPT_FORMAT = 1
STATE_KEYS = {"model", "optimizer", "scheduler", "epoch", "step", "epoch_complete", "rng", "config", "classes",
              "best_top1", "format"}


# ---------------------------------------------------------------- Fabric
def make_fabric(run):
    from lightning_fabric import Fabric

    strategy = run.strategy
    if strategy == "fsdp":
        from lightning_fabric.strategies import FSDPStrategy

        strategy = FSDPStrategy(state_dict_type="full")
    elif strategy == "ddp" and run.accelerator == "cpu":
        from lightning_fabric.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    fabric = Fabric(accelerator=run.accelerator, devices=run.devices, num_nodes=run.num_nodes,
                    strategy=strategy, precision=run.precision)
    fabric.launch()
    return fabric


# ---------------------------------------------------------------- optimiser and schedule
def param_groups(model, lr: float, ratio: float, weight_decay: float) -> list[dict]:
    """Four groups: (backbone | new) x (decay | no decay). New = the temporal module, temporal
    convolutions inserted into the backbone, and the head when it trains."""
    groups = {(new, decay): [] for new in (False, True) for decay in (False, True)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = name.startswith(("temporal.", "head.")) or ".tconv." in name
        no_decay = p.ndim < 2 or "embedding" in name or name.endswith(("pos", ".bias")) or name.startswith("head.")
        groups[(new, not no_decay)].append(p)
    out = []
    for (new, decay), params in groups.items():
        if params:
            out.append({"params": params, "lr": lr * (ratio if new else 1.0),
                        "weight_decay": weight_decay if decay else 0.0})
    return out


def cosine_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- samplers
class EpochSampler(Sampler):
    """This rank's share of a seeded permutation per epoch (train), or of the plain order (eval).

    train: every rank takes rank::world of the same permutation, truncated to equal length so
    all ranks step together. eval: rank::world without padding or truncation, so every sample is
    scored exactly once across ranks.
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1, shuffle: bool = True, seed: int = 0):
        self.n, self.rank, self.world, self.shuffle, self.seed = n, rank, world, shuffle, seed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:  # not set_epoch: Fabric would call that with its own count
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world))
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        usable = (self.n // self.world) * self.world or self.n
        return perm[:usable][self.rank::self.world]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def loader(dataset, batch: int, shuffle: bool, workers: int, seed: int, rank: int, world: int,
           drop_last: bool = False) -> DataLoader:
    from tkvr.data.loader import collate

    return DataLoader(dataset, batch_size=batch, sampler=EpochSampler(len(dataset), rank, world, shuffle, seed),
                      num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      drop_last=drop_last, prefetch_factor=2 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))


def start_epoch(dl: DataLoader, epoch: int, seed: int, rank: int) -> None:
    """Per-epoch, per-rank seeds for the sampler and the workers' RNG (a new iterator each epoch)."""
    dl.sampler.use_epoch(epoch)
    dl.generator.manual_seed(seed * 100003 + epoch * 1009 + rank)


# ---------------------------------------------------------------- evaluation
def _gather_rows(fabric, local: torch.Tensor) -> torch.Tensor:
    """Rows of different counts per rank -> all rows on every rank (column 0 is the sample index;
    padding rows carry index -1 and are dropped)."""
    local = local.to(fabric.device)
    if fabric.world_size > 1:
        n = int(fabric.all_gather(torch.tensor(len(local), device=fabric.device)).max())
        pad = torch.full((n - len(local), local.shape[1]), -1, dtype=local.dtype, device=fabric.device)
        local = fabric.all_gather(torch.cat([local, pad])).reshape(-1, local.shape[1])
        local = local[local[:, 0] >= 0]
    local = local.cpu()
    return local[local[:, 0].argsort()]  # in sample order, whatever the rank split


@torch.no_grad()
def predict_scores(fabric, model, dl: DataLoader, limit: int | None = None) -> dict:
    """Softmax scores averaged over the views of every sample, each sample once across ranks.

    Batches are [B, V, T, 3, H, W]; the B*V views go through the model together.
    Returns index [N], label [N], bad [N] (>= 0: unreadable), scores [N, C], in sample order.
    """
    model.eval()
    rows = []
    for i, batch in enumerate(dl):
        if limit is not None and i >= limit:
            break
        x = batch["video"].to(fabric.device, non_blocking=True)  # [B, V, T, 3, H, W]
        b, v = x.shape[:2]
        scores = model(x.flatten(0, 1)).float().softmax(-1).view(b, v, -1).mean(1)  # [B, C]
        meta = torch.stack([batch["index"], batch["label"], batch["bad"]], 1).to(scores)
        rows.append(torch.cat([meta, scores.double()], 1))
    model.train()
    c = (model.module if hasattr(model, "module") else model).head.num_classes
    local = torch.cat(rows) if rows else torch.zeros(0, 3 + c, dtype=torch.float64)
    allr = _gather_rows(fabric, local.double())
    return {"index": allr[:, 0].long(), "label": allr[:, 1].long(), "bad": allr[:, 2].long(),
            "scores": allr[:, 3:].float()}


def evaluate(fabric, model, dl: DataLoader, num_classes: int, limit: int | None = None) -> dict:
    return metrics(predict_scores(fabric, model, dl, limit), num_classes)


def metrics(pred: dict, num_classes: int, keep: list[int] | None = None) -> dict:
    """Top-1 / top-5 / mean class accuracy (percent). `keep` restricts both the samples and the
    classifier to a class subset (the half-class protocol)."""
    ok = pred["bad"] < 0
    labels, scores = pred["label"][ok], pred["scores"][ok]
    if keep is not None:
        cols = torch.tensor(keep)
        remap = torch.full((num_classes,), -1, dtype=torch.long)
        remap[cols] = torch.arange(len(keep))
        labels = remap[labels]
        sel = labels >= 0
        labels, scores = labels[sel], scores[sel][:, cols]
        num_classes = len(keep)
    n = len(labels)
    top = scores.topk(min(5, num_classes), dim=-1).indices if n else torch.zeros(0, 1, dtype=torch.long)
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(1)
    per_class = {c: 100.0 * hit1[labels == c].float().mean().item() for c in range(num_classes) if (labels == c).any()}
    return {
        "top1": 100.0 * hit1.float().mean().item() if n else 0.0,
        "top5": 100.0 * hit5.float().mean().item() if n else 0.0,
        "mean_class_accuracy": sum(per_class.values()) / len(per_class) if per_class else 0.0,
        "per_class": per_class,
        "num_samples": n,
        "unreadable": pred["index"][~ok].tolist(),
    }


@torch.no_grad()
def extract_features(fabric, model, dl: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Video embeddings [N, D] (before the head) and labels [N], in sample order, on every rank."""
    model.eval()
    rows = []
    for batch in dl:
        x = batch["video"].to(fabric.device, non_blocking=True)  # [B, V, T, 3, H, W]
        b, v = x.shape[:2]
        mod = model.module if hasattr(model, "module") else model
        z = mod.encode(x.flatten(0, 1)).float().view(b, v, -1).mean(1)  # [B, D]
        meta = torch.stack([batch["index"], batch["label"], batch["bad"]], 1).to(z)
        rows.append(torch.cat([meta.double(), z.double()], 1))
    model.train()
    width = (model.module if hasattr(model, "module") else model).head.weight.shape[1]
    local = torch.cat(rows) if rows else torch.zeros(0, 3 + width, dtype=torch.float64)
    allr = _gather_rows(fabric, local)
    allr = allr[allr[:, 2] < 0]  # unreadable samples give no feature
    return allr[:, 3:].float(), allr[:, 1].long()


# ---------------------------------------------------------------- checkpoints
def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(fabric, path: Path, state: dict) -> None:
    """fabric.save to a temporary name, then an atomic rename by rank 0."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fabric.save(tmp, state)
    fabric.barrier()
    if fabric.global_rank == 0:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fabric.barrier()


def find_checkpoint(where: str) -> Path:
    """A run directory means its best checkpoint, else its last; a file means itself."""
    p = Path(where)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            for cand in (p / "checkpoints" / name, p / name):
                if cand.is_file():
                    return cand
        raise TkvrError(f"--checkpoint {where}: no checkpoints/best.pt or checkpoints/last.pt in this folder")
    if not p.is_file():
        raise TkvrError(f"--checkpoint {where}: no such file or run directory")
    return p


def read_checkpoint(where: str) -> dict:
    """The checkpoint as plain data (weights_only), checked to be a tkvr checkpoint."""
    from tkvr.fileio import safe_load

    path = find_checkpoint(where)
    ckpt = safe_load(path, "--checkpoint file")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT or "config" not in ckpt:
        raise TkvrError(f"--checkpoint {path} is not a tkvr checkpoint (a run's checkpoints/best.pt or "
                        "last.pt); for backbone weights use --pretrained PATH")
    ckpt["path"] = str(path)
    return ckpt


# ---------------------------------------------------------------- building
def build_for(cfg: TrainConfig, classes: list[str], templates: list[str], weights: bool = True,
              embeddings=None):
    """Backbone + head + temporal module for `classes`. `weights=False` builds the architecture
    only (a checkpoint supplies the weights). `embeddings` [C, D] overrides the head's matrix."""
    from tkvr.heads import Head, head_matrix
    from tkvr.model import build_backbone, build_model
    from tkvr.text import encode_classes, load_embeddings

    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained if weights else "none")
    if embeddings is None:
        if m.head == "text":
            if cfg.run.embeddings:
                embeddings = load_embeddings(cfg.run.embeddings, classes, backbone.dim)["embeddings"]
            else:
                embeddings = encode_classes(backbone, classes, templates)
        elif m.head == "lda":  # a placeholder: fit_lda_head replaces it from visual features
            embeddings = head_matrix("random", len(classes), backbone.dim, cfg.optim.seed)
        else:
            embeddings = head_matrix(m.head, len(classes), backbone.dim, cfg.optim.seed)
    head = Head(embeddings, m.head, trainable=m.unfreeze_head)
    model = build_model(backbone, m.temporal, head, m.frames, m.temporal_layers, m.t1d_blocks)
    if cfg.optim.grad_checkpointing:
        model.visual.set_grad_checkpointing(True)
    return backbone, model


def fit_lda_head(fabric, cfg: TrainConfig, model, src, preprocess: dict, out: Path) -> torch.Tensor:
    """--head lda: pre-trained visual features of up to --lda-samples videos per class of the
    training split (one centre view each), extracted on every device, cached in the run
    directory; multi-class LDA on them becomes the frozen head."""
    from tkvr.data.loader import ClipDataset
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import pick_decoder
    from tkvr.heads import Head, fit_lda
    from tkvr.text import save_embeddings

    cache = out / "lda_features.pt"
    if cache.is_file():
        from tkvr.fileio import safe_load

        data = safe_load(cache, "LDA feature cache")
        feats, labels = data["features"], data["labels"]
        say(f"LDA: {len(feats)} cached features from {cache}")
    else:
        train = src.split("train")
        by_class: dict[int, list[int]] = {}
        for i, s in enumerate(train):
            by_class.setdefault(s.label, []).append(i)
        rng = random.Random(cfg.optim.seed)
        ids = sorted(i for idx in by_class.values() for i in rng.sample(idx, min(len(idx), cfg.model.lda_samples)))
        ds = ClipDataset([train[i] for i in ids], cfg.model.frames, EvalTransform(preprocess, 1), train=False,
                         decoder=pick_decoder(cfg.data.decoder, quiet=True), device=cfg.data.decode_device,
                         frame_template=src.frame_template, frame_start=src.frame_start)
        workers = workers_for(cfg.data.workers)
        dl = fabric.setup_dataloaders(loader(ds, cfg.optim.device_batch or 16, False, workers, 0,
                                             fabric.global_rank, fabric.world_size), use_distributed_sampler=False)
        model.to(fabric.device)
        feats, labels = extract_features(fabric, model, dl)
        if fabric.global_rank == 0:
            from tkvr.fileio import atomic_save

            atomic_save({"features": feats, "labels": labels}, cache)
        say(f"LDA: features of {len(feats)} training videos (<= {cfg.model.lda_samples} per class) -> {cache}")
    w = fit_lda(feats, labels, len(src.classes))
    model.head = Head(w, "lda", trainable=cfg.model.unfreeze_head)
    if fabric.global_rank == 0:
        save_embeddings(out / "lda_embeddings.pt", w, src.classes, cfg.model.backbone, cfg.model.pretrained,
                        [], "lda")
    return w


# ---------------------------------------------------------------- logs
class CsvLog:
    def __init__(self, path: Path, columns: list[str], append: bool):
        self.path, self.columns = path, columns
        if not (append and path.is_file()):
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(columns)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, "")) for c in self.columns])


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def versions() -> dict:
    import lightning_fabric
    import open_clip
    import torchvision

    from tkvr import __version__

    return {"tkvr": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "open_clip": open_clip.__version__, "lightning_fabric": lightning_fabric.__version__,
            "python": sys.version.split()[0]}


# ---------------------------------------------------------------- training
class Trainer:
    """fit() = setup -> short validation -> epochs (train, validate, checkpoint) -> report."""

    def __init__(self, cfg: TrainConfig, fabric, model, train_set, val_set, classes: list[str], out: Path,
                 bad_budget, resume: Path | None = None, train_ids: list[int] | None = None):
        self.cfg, self.fabric, self.classes, self.out = cfg, fabric, classes, out
        o, r = cfg.optim, cfg.run
        self.accum = o.accumulation(fabric.world_size)
        device_batch = o.device_batch or o.batch_size // fabric.world_size
        workers = workers_for(cfg.data.workers)
        self.train_dl = loader(train_set, device_batch, True, workers, o.seed, fabric.global_rank,
                               fabric.world_size, drop_last=len(train_set) >= device_batch * fabric.world_size)
        self.val_dl = loader(val_set, device_batch, False, workers, o.seed, fabric.global_rank, fabric.world_size)
        # Batches stay on the CPU until the loop moves the tensors it needs: the `bad` flags are
        # read on the host every step, and reading them from the device would sync it.
        self.train_dl, self.val_dl = fabric.setup_dataloaders(self.train_dl, self.val_dl,
                                                              use_distributed_sampler=False, move_to_device=False)
        self.steps_per_epoch = max(1, self._batches(self.train_dl) // self.accum)
        total = self.steps_per_epoch * o.epochs
        fused = o.fused if o.fused is not None else fabric.device.type == "cuda"
        optimizer = torch.optim.AdamW(param_groups(model, o.lr, o.new_lr_ratio, o.weight_decay),
                                      betas=o.betas, eps=1e-8, fused=fused)
        if r.compile:
            model.visual = torch.compile(model.visual)
        self.model, self.optimizer = fabric.setup(model, optimizer)
        self.scheduler = cosine_schedule(self.optimizer, round(o.warmup * self.steps_per_epoch), total)
        self.bad = bad_budget
        self.train_ids = train_ids
        self.epoch, self.step, self.best, self.complete = 0, 0, -1.0, True
        # Augmentations in the main process (workers=0) draw from the global RNG: seed it per rank.
        torch.manual_seed(o.seed * 1000 + fabric.global_rank)
        random.seed(o.seed * 1000 + fabric.global_rank)
        if resume is not None:
            self._resume(resume)

    def _batches(self, dl) -> int:
        n = len(dl)
        lim = self.cfg.optim.limit_batches
        return min(n, lim) if lim else n

    def state(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch, "step": self.step, "epoch_complete": self.complete, "rng": rng_state(),
                "config": self.cfg.to_dict(), "classes": self.classes, "best_top1": self.best,
                "format": CKPT_FORMAT}

    def _resume(self, path: Path) -> None:
        state = {"model": self.model, "optimizer": self.optimizer}
        rest = self.fabric.load(path, state, weights_only=True)
        unknown = set(rest) - STATE_KEYS
        if unknown:
            raise TkvrError(f"--resume {path}: unknown keys {sorted(unknown)} (a checkpoint of another tool?)")
        self.scheduler.load_state_dict(rest["scheduler"])
        self.epoch, self.step, self.best = rest["epoch"], rest["step"], rest["best_top1"]
        if not rest["epoch_complete"]:
            say(f"resume: epoch {self.epoch + 1} was interrupted; it restarts from its beginning")
        else:
            set_rng_state(rest["rng"])
        say(f"resumed from {path}: epoch {self.epoch}, step {self.step}")

    def validate(self, limit=None) -> dict:
        return evaluate(self.fabric, self.model, self.val_dl, len(self.classes), limit)

    def fit(self) -> dict:
        cfg, fabric = self.cfg, self.fabric
        o, r = cfg.optim, cfg.run
        ck = self.out / "checkpoints"
        epochs_log = CsvLog(self.out / "metrics.csv", ["epoch", "step", "train_loss", "val_top1", "val_top5",
                                                      "val_mean_class", "lr", "clips_per_s", "wall_s"],
                            append=self.step > 0)
        steps_log = CsvLog(self.out / "steps.csv", ["epoch", "step", "loss", "lr", "clips_per_s"], append=self.step > 0)
        tb = _tensorboard(fabric, self.out) if r.tensorboard else None
        if self.step == 0:  # a broken evaluation shows up now, not after an epoch
            m = self.validate(limit=2)
            say(f"sanity validation (2 batches): top-1 {m['top1']:.1f}% on {m['num_samples']} clips")
        start = time.time()
        last_metrics: dict = {}
        history = []
        stop = False
        progress = TrainProgress(o.epochs, self.steps_per_epoch, enabled=fabric.global_rank == 0)
        with progress:
            while self.epoch < o.epochs and not stop:
                start_epoch(self.train_dl, self.epoch, o.seed, fabric.global_rank)
                self.model.train()
                self.complete = False
                t0, clips, losses = time.time(), 0, []
                progress.start_epoch(self.epoch)
                n_batches = self._batches(self.train_dl)
                seen = 0
                for i, batch in enumerate(self.train_dl):
                    if i >= n_batches:
                        break
                    seen = i + 1
                    if self.bad is not None:
                        self.bad.update(batch["bad"])
                    x = batch["video"].to(fabric.device, non_blocking=True)  # [B, T, 3, H, W]
                    y = batch["label"].to(fabric.device, non_blocking=True)
                    boundary = (i + 1) % self.accum == 0 or i + 1 == n_batches
                    with fabric.no_backward_sync(self.model, enabled=not boundary):
                        logits = self.model(x)  # [B, C]
                        loss = F.cross_entropy(logits.float(), y)
                        fabric.backward(loss / self.accum)
                    losses.append(loss.detach())
                    clips += x.shape[0] * fabric.world_size
                    if not boundary:
                        continue
                    if o.grad_clip:
                        fabric.clip_gradients(self.model, self.optimizer, max_norm=o.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    self.step += 1
                    if self.step % r.log_every == 0 or seen == n_batches:  # reading the loss syncs a GPU
                        lr = self.optimizer.param_groups[0]["lr"]
                        rate = clips / max(1e-9, time.time() - t0)
                        value = float(loss.detach())
                        progress.update(self.step, value, lr, rate)
                        if fabric.global_rank == 0:
                            steps_log.write({"epoch": self.epoch + 1, "step": self.step, "loss": value, "lr": lr,
                                             "clips_per_s": rate})
                    else:
                        progress.advance()
                    if o.max_steps and self.step >= o.max_steps:
                        stop = True
                        if i + 1 < n_batches:
                            break
                train_loss = float(torch.stack(losses).mean()) if losses else float("nan")
                train_loss = float(fabric.all_reduce(torch.tensor(train_loss, device=fabric.device), reduce_op="mean"))
                if seen < n_batches:
                    save_checkpoint(fabric, ck / "last.pt", self.state())
                    say(f"stopped at step {self.step} (--max-steps) inside epoch {self.epoch + 1}")
                    break
                self.epoch += 1
                self.complete = True
                row = {"epoch": self.epoch, "step": self.step, "train_loss": train_loss,
                       "lr": self.optimizer.param_groups[0]["lr"], "clips_per_s": clips / max(1e-9, time.time() - t0),
                       "wall_s": time.time() - start}
                if self.epoch % r.eval_every == 0 or self.epoch == o.epochs or stop:
                    last_metrics = self.validate()
                    row.update(val_top1=last_metrics["top1"], val_top5=last_metrics["top5"],
                               val_mean_class=last_metrics["mean_class_accuracy"])
                    if last_metrics["top1"] > self.best:
                        self.best = last_metrics["top1"]
                        save_checkpoint(fabric, ck / "best.pt", self.state())
                save_checkpoint(fabric, ck / "last.pt", self.state())
                if fabric.global_rank == 0:
                    epochs_log.write(row)
                    if tb is not None:
                        tb.log_metrics({k: v for k, v in row.items() if isinstance(v, float)}, step=self.step)
                history.append(row)
                progress.end_epoch(row)
        return {"history": history, "metrics": last_metrics, "wall_s": time.time() - start}


def _tensorboard(fabric, out: Path):
    try:
        from lightning_fabric.loggers import TensorBoardLogger

        return TensorBoardLogger(str(out), name="tensorboard", version="")
    except (ImportError, ModuleNotFoundError):
        raise TkvrError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


def write_report(path: Path, payload: dict, command: str = "") -> None:
    from tkvr.fileio import atomic_write_text

    atomic_write_text(json.dumps({"command": command, "versions": versions(), **payload},
                                 indent=1, default=str), path)
