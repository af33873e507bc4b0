"""The one training engine every command uses: optimiser, schedule and the loop (Fabric is
launched by tkvr.run.launch).

Recipe defaults (the paper, lines 172-176; the log at 092ad0a and train.py at 238c07f): AdamW, lr
5e-6 for the visual encoder and the logit scale, 10x for new modules (temporal module, inserted
temporal convolutions, a learned head); betas (0.9, 0.98), eps 1e-8; weight decay 0.2 on every
parameter (`--decay matrices` spares norms, biases, embeddings and the head); cosine schedule with 5
warm-up epochs, stepped per optimiser step (the released scheduler, train.py at 238c07f, steps every
10 iterations); 30 epochs; global batch 128 = device batch x devices x nodes x accumulation (the
paper's; the released K400 configs use 32 per GPU on 8 GPUs).

`Trainer.fit` is a short driver over named pieces: an epoch of training (`train_epoch`), an
optimiser step (`optimizer_step`), validation and checkpoints at the end of an epoch
(`end_epoch`). It receives its parts ready (`Parts`: the model and its Fabric wrapper, the optimiser,
the loaders, built by tkvr.run.training.ready) and calls the model's own policy (loss, param
groups, begin_step); checkpoints live in tkvr.run.checkpoint, metrics in tkvr.run.metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tkvr.base.errors import Preempted, TkvrError
from tkvr.base.progress import TrainProgress, say
from tkvr.data.loader import start_epoch
from tkvr.run.checkpoint import FORMAT, HEAD_FORM, STATE_KEYS, rng_state, save_checkpoint, set_rng_state
from tkvr.run.collective import gather_with_grad, stop_if_not_finite
from tkvr.run.logs import EPOCH_COLUMNS, STEP_COLUMNS, CsvLog
from tkvr.run.metrics import evaluate
from tkvr.run.preempt import Signals, signal_name
from tkvr.run.settings import TrainConfig
from tkvr.run.trackers import Trackers


# ---------------------------------------------------------------- schedule
def lr_schedule(optimizer, warmup_steps: int, total_steps: int, kind: str = "cosine"):
    """A linear warm-up from 0 over `warmup_steps`, then `kind` (--schedule): cosine down to 0
    at `total_steps`, step (x0.1 at 50% and x0.01 from 75% of the steps after the warm-up), or
    constant. Stepped once per optimiser step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "step":
            return 0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0
        if kind == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- training
@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch (metrics.csv)
    metrics: dict = field(default_factory=dict)  # the last validation
    wall_s: float = 0.0  # since the run's start: a resumed run's earlier part included
    partial: bool = False  # --max-steps stopped it before its last epoch ended (a smoke run)


@dataclass
class Parts:
    """What the loop receives, ready: the model (its policy: loss, param groups, begin_step), its
    Fabric wrapper, the optimiser over it, the loaders (set up with Fabric), the train set's
    device augmentation (None: the workers augment)."""

    model: torch.nn.Module
    wrapped: object
    optimizer: torch.optim.Optimizer
    train_dl: object
    val_dl: object
    augment: object = None


class Trainer:
    """fit() = short validation -> epochs (train, validate, checkpoint) -> result."""

    def __init__(
        self,
        cfg: TrainConfig,
        fabric,
        parts: Parts,
        classes: list[str],
        out: Path,
        bad_budget,
        resume: Path | None = None,
    ):
        self.cfg, self.fabric, self.classes, self.out = cfg, fabric, classes, out
        o = cfg.optim
        self.accum = o.accumulation(fabric.world_size)
        self.train_dl, self.val_dl = parts.train_dl, parts.val_dl
        # model: tkvr's model and its policy (loss, param groups, begin_step); wrapped: Fabric's
        # wrapper around it, which runs forward and backward across devices
        self.model, self.wrapped, self.optimizer, self.augment = (
            parts.model,
            parts.wrapped,
            parts.optimizer,
            parts.augment,
        )
        self.steps_per_epoch = max(1, self._batches() // self.accum)
        self.scheduler = lr_schedule(
            self.optimizer,
            round(o.warmup * self.steps_per_epoch),
            self.steps_per_epoch * o.epochs,
            o.schedule,
        )
        self.bad = bad_budget
        self.gather = gather_with_grad if o.batch_gather and fabric.world_size > 1 else None
        # earlier: seconds the run trained before this process (a resumed run's, set by fit)
        self.epoch, self.step, self.best, self.complete, self.earlier = 0, 0, -1.0, True, 0.0
        self.trackers = None  # --logger's, opened by fit on rank 0
        self.signals = Signals()  # a scheduler's SIGTERM / SIGUSR1, asked at each step
        # the epoch in hand: batches done, their losses and steps (what a mid-epoch checkpoint keeps)
        self.position, self.epoch_losses, self.epoch_steps = 0, [], []
        self.carry = None  # a resumed mid-epoch checkpoint: (batches done, losses, steps, RNG state)
        self.step_lr = self.optimizer.param_groups[0]["lr"]
        # an epoch of fewer steps than --log-every logs every step: the loss curve keeps its points
        self.log_every = cfg.run.log_every if self.steps_per_epoch > cfg.run.log_every else 1
        self.progress = TrainProgress(
            cfg.optim.epochs, self.steps_per_epoch, enabled=False
        )  # fit's bar replaces it
        if resume is not None:
            self._resume(resume)

    def _batches(self) -> int:
        lim = self.cfg.optim.limit_batches
        return min(len(self.train_dl), lim) if lim else len(self.train_dl)

    def state(self) -> dict:
        return {
            "model": self.wrapped,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_complete": self.complete,
            "partial_epoch": None
            if self.complete
            else {
                "position": self.position,
                "losses": torch.stack(self.epoch_losses).cpu() if self.epoch_losses else torch.zeros(0),
                "steps": list(self.epoch_steps),
            },
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "classes": self.classes,
            "best_top1": self.best,
            "format": FORMAT,
            "head_form": HEAD_FORM,
        }

    def _resume(self, path: Path) -> None:
        rest = self.fabric.load(path, {"model": self.wrapped, "optimizer": self.optimizer}, weights_only=True)
        unknown = set(rest) - STATE_KEYS
        if unknown:
            raise TkvrError(
                f"--resume {path}: unknown keys {sorted(unknown)} (a checkpoint of another tool?)"
            )
        self.scheduler.load_state_dict(rest["scheduler"])
        self.epoch, self.step, self.best = rest["epoch"], rest["step"], rest["best_top1"]
        part = rest.get("partial_epoch")
        if not rest["epoch_complete"] and part and part["position"] > 0:  # a stop at a step (signal)
            losses = list(part["losses"].to(self.fabric.device).unbind())
            self.carry = (part["position"], losses, list(part["steps"]), rest["rng"])
            say(
                f"resume: epoch {self.epoch + 1} goes on after batch {part['position']} (the batches "
                "before are read again, not trained on)"
            )
        elif not rest["epoch_complete"]:
            say(f"resume: epoch {self.epoch + 1} was interrupted; it restarts from its beginning")
        else:
            set_rng_state(rest["rng"])
        say(f"resumed from {path}: epoch {self.epoch}, step {self.step}")

    def validate(self, limit=None) -> dict:
        total = min(len(self.val_dl), limit) if limit else len(self.val_dl)
        with self.progress.subtask("validating", total) as tick:
            return evaluate(
                self.fabric,
                self.wrapped,
                self.val_dl,
                len(self.classes),
                limit,
                self.cfg.data.view_average,
                tick,
            )

    def preempted(self) -> Preempted:
        sig, n = self.signals.stopped, self._batches()
        where = (
            f"epoch {self.epoch + 1}, batch {self.position} of {n}"
            if not self.complete
            else f"end of epoch {self.epoch}"
        )
        return Preempted(
            sig,
            f"stopped by {signal_name(sig)} at step {self.step} ({where}); its checkpoint is written: "
            f"continue with tkvr train --out {self.out} --resume auto",
        )

    def save(self, name: str) -> None:
        save_checkpoint(self.fabric, self.out / "checkpoints" / f"{name}.pt", self.state())

    def fit(self) -> FitResult:
        o, rank0 = self.cfg.optim, self.fabric.global_rank == 0
        ran = waited = 0.0  # a resumed run's clocks go on from the rows it keeps
        if rank0:
            resumed = self.step > 0
            self.epochs_log = CsvLog(
                self.out / "metrics.csv", EPOCH_COLUMNS, "epoch", self.epoch if resumed else None
            )
            self.steps_log = CsvLog(
                self.out / "steps.csv", STEP_COLUMNS, "step", self.step if resumed else None
            )
            ran = max(float(log.last.get("wall_s") or 0.0) for log in (self.epochs_log, self.steps_log))
            waited = float(self.steps_log.last.get("data_wait_s") or 0.0)
        names = self.cfg.run.loggers
        self.trackers = Trackers(names, self.out, self.cfg.to_dict()) if rank0 and names else None
        if self.step == 0:  # a broken evaluation shows up now, not after an epoch
            m = self.validate(limit=2)
            say(f"sanity validation (2 batches): top-1 {m['top1']:.1f}% on {m['num_samples']} clips")
        self.earlier = ran
        result, start = FitResult(), time.time() - ran
        self.started, self.data_wait = time.perf_counter() - ran, waited
        progress = self.progress = TrainProgress(o.epochs, self.steps_per_epoch, enabled=rank0)
        with progress, self.signals.watching():
            while self.epoch < o.epochs:
                t0 = time.time()
                loss, clips, finished = self.train_epoch(progress)
                if not finished:
                    self.save("last")
                    if self.signals.stopped:  # preempted: the checkpoint of this step, then out
                        raise self.preempted()
                    # --max-steps inside an epoch: a smoke run reports the weights it has
                    say(f"stopped at step {self.step} (--max-steps) inside epoch {self.epoch + 1}")
                    result.metrics, result.partial = self.validate(o.limit_val_batches), True
                    break
                stop = bool(o.max_steps and self.step >= o.max_steps)
                row = self.end_epoch(
                    loss, clips / max(1e-9, time.time() - t0), time.time() - start, result, stop
                )
                progress.end_epoch(row)
                # the epoch's own checkpoint is the stop's (after the last epoch: the run ends anyway)
                if self.epoch < o.epochs and self.signals.agreed(self.fabric):
                    raise self.preempted()
                if stop:
                    result.partial = self.epoch < o.epochs
                    break
        result.wall_s = time.time() - start
        return result

    def train_epoch(self, progress) -> tuple[float, int, bool]:
        """One epoch -> (mean loss over ranks, clips seen, whether the epoch ran to its end)."""
        fabric, o = self.fabric, self.cfg.optim
        start_epoch(self.train_dl, self.epoch, o.seed, fabric.global_rank)
        self.wrapped.train()
        self.complete = False
        progress.start_epoch(self.epoch)
        t0, clips, n, seen = time.time(), 0, self._batches(), 0
        # a resumed mid-epoch stop: its batches done are read again (the readers' draws follow the
        # same course), not trained on, then the RNG state of the stop goes on
        skip, losses, steps, rng = self.carry or (0, [], [], None)
        self.carry, self.epoch_losses, self.epoch_steps = None, losses, steps
        checked = len(losses)  # the optimiser step of each loss; losses before `checked` are finite
        ready = time.perf_counter()
        for i, batch in enumerate(self.train_dl):
            self.data_wait += time.perf_counter() - ready  # the host waited this long for the batch
            if i >= n:
                break
            seen = i + 1
            if self.bad is not None:
                self.bad.update(batch["bad"], batch.get("why"), check=fabric.world_size == 1)
            if seen <= skip:
                if seen == skip:
                    set_rng_state(rng)
                continue
            self.model.begin_step(self.step + 1, o.seed)  # all micro-batches of a step alike
            x = self.clips(batch)  # [B, T, 3, H, W]
            y = batch["label"].to(fabric.device, non_blocking=True)
            boundary = seen % self.accum == 0 or seen == n
            with fabric.no_backward_sync(self.wrapped, enabled=not boundary):
                loss = self.model.loss(self.wrapped, x, y, self.gather)
                fabric.backward(loss / self.accum)
            losses.append(loss.detach())
            steps.append(self.step + 1)
            clips += x.shape[0] * fabric.world_size
            if not boundary:
                continue
            self.optimizer_step()
            self.position = seen
            if self.step % self.log_every == 0 or seen == n:  # reading the loss syncs a GPU
                checked = stop_if_not_finite(fabric, losses, steps, checked, self.epoch, self.out)
                self.log_step(progress, float(loss.detach()), clips / max(1e-9, time.time() - t0))
            else:
                progress.advance()
            # ranks agree on a signal where the loss is read anyway (a device sync; each step on one process)
            ask = fabric.world_size == 1 or self.step % self.log_every == 0
            if seen < n and (
                (ask and self.signals.agreed(fabric)) or (o.max_steps and self.step >= o.max_steps)
            ):
                break
            ready = time.perf_counter()
        stop_if_not_finite(fabric, losses, steps, checked, self.epoch, self.out)  # before this epoch is saved
        mean = float(torch.stack(losses).mean()) if losses else float("nan")
        mean = float(fabric.all_reduce(torch.tensor(mean, device=fabric.device), reduce_op="mean"))
        if self.bad is not None:  # every rank alike: the budget holds for the whole run
            self.bad.merge(fabric)
            self.bad.check()
        return mean, clips, seen >= n

    def clips(self, batch) -> torch.Tensor:
        """The batch on the device; uint8 clips with crop parameters are augmented there."""
        dev = self.fabric.device
        if "params" not in batch:
            return batch["video"].to(dev, non_blocking=True)
        return torch.stack(
            [
                self.augment.apply(c.to(dev, non_blocking=True), p)
                for c, p in zip(batch["video"], batch["params"].tolist())
            ]
        )

    def optimizer_step(self) -> None:
        if self.cfg.optim.grad_clip:
            self.fabric.clip_gradients(self.wrapped, self.optimizer, max_norm=self.cfg.optim.grad_clip)
        self.step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, for the logs
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1

    def log_step(self, progress, loss: float, rate: float) -> None:
        lr = self.step_lr
        progress.update(self.step, loss, lr, rate)
        if self.fabric.global_rank == 0:
            self.steps_log.write(
                {
                    "epoch": self.epoch + 1,
                    "step": self.step,
                    "loss": loss,
                    "lr": lr,
                    "clips_per_s": rate,
                    "wall_s": time.perf_counter() - self.started,
                    "data_wait_s": self.data_wait,
                    "template": self.model.step_template(),
                }
            )
            if self.trackers is not None:
                self.trackers.log({"train/loss": loss, "train/lr": lr, "train/clips_per_s": rate}, self.step)

    def end_epoch(self, loss: float, rate: float, wall: float, result: FitResult, stop: bool) -> dict:
        """Validate (every --eval-every epochs, and at the end), keep best and last, log the row."""
        self.epoch += 1
        self.complete = True
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": loss,
            "lr": self.step_lr,
            "clips_per_s": rate,
            "wall_s": wall,
        }
        if self.epoch % self.cfg.run.eval_every == 0 or self.epoch == self.cfg.optim.epochs or stop:
            result.metrics = m = self.validate(self.cfg.optim.limit_val_batches)
            row.update(val_top1=m["top1"], val_top5=m["top5"], val_mean_class=m["mean_class_accuracy"])
            if m["top1"] > self.best:
                self.best = m["top1"]
                self.save("best")
        self.save("last")
        if self.cfg.run.save_every and self.epoch % self.cfg.run.save_every == 0:
            self.save(f"epoch_{self.epoch}")  # kept: the next epoch does not replace it
        if self.fabric.global_rank == 0:
            self.epochs_log.write(row)
            if self.trackers is not None:
                self.trackers.log({f"epoch/{k}": v for k, v in row.items() if k != "step"}, self.step)
        result.history.append(row)
        return row
