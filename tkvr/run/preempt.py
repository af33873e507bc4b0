"""Preemption: a scheduler's SIGTERM (SLURM, Kubernetes) or SLURM's early SIGUSR1 (`#SBATCH
--signal=USR1@120`) stops a run at its next optimiser step with a checkpoint of that step.

The handler only notes the signal; the loop asks at step boundaries, all ranks together (a
signal that reached one rank stops them all at the same step, so none waits at a collective for
the others): every step on one process, every --log-every steps under DDP, where the loss is read
anyway (agreeing is a collective whose answer the host must read: a device sync). The checkpoint
keeps where the epoch was (the batches done, their losses), so `--resume auto` reads those
batches again without training on them (the readers' random draws then follow the same course)
and goes on with the RNG state of the stop: the weights end equal to an uninterrupted run's.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

import torch

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Signals:
    """The first preempting signal received while `watching()` (0: none)."""

    def __init__(self):
        self.got = 0  # what reached this process
        self.stopped = 0  # what the ranks agreed to stop for

    def note(self, signum, frame) -> None:
        self.got = self.got or signum

    @contextmanager
    def watching(self):
        try:
            before = {s: signal.signal(s, self.note) for s in SIGNALS}
        except ValueError:  # not the main thread (a library caller's thread): the default stays
            yield self
            return
        try:
            yield self
        finally:
            for s, h in before.items():
                signal.signal(s, h)

    def agreed(self, fabric) -> int:
        """The signal any rank received (0: none), the same on every rank."""
        if fabric.world_size == 1:
            self.stopped = self.got
            return self.got
        flags = torch.zeros(len(SIGNALS), device=fabric.device)
        if self.got:
            flags[SIGNALS.index(self.got)] = 1
        flags = fabric.all_reduce(flags, reduce_op="sum")
        hit = [s for s, f in zip(SIGNALS, flags.tolist()) if f > 0]
        self.stopped = int(hit[0]) if hit else 0
        return self.stopped


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
