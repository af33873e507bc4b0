"""What the ranks do together in a training step: a gather that keeps gradients (the matching
loss's --batch-gather) and the stop at a non-finite loss that every rank takes alike."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from tkvr.base.errors import Fault


class _Gather(torch.autograd.Function):
    """all_gather of equal-sized tensors whose backward sums every rank's gradient of the whole
    gathered tensor and hands each rank the part it made."""

    @staticmethod
    def forward(ctx, x):
        ctx.world, ctx.rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world)[ctx.rank]


def gather_with_grad(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every rank's rows of each x, concatenated in rank order [sum b_r, ...]. The gradient of
    every rank's loss reaches the rank that made each row, so with DDP's averaging the update is
    the one-process update on the concatenated batch (equal batches). Ranks may hold batches of
    different sizes (a last, shorter batch): rows are padded to gather, then dropped; the sizes
    are exchanged once for all the tensors."""

    world = dist.get_world_size()
    size = torch.tensor([xs[0].shape[0]], device=xs[0].device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    out = []
    for x in xs:
        pad = torch.zeros(max(sizes) - x.shape[0], *x.shape[1:], dtype=x.dtype, device=x.device)
        parts = _Gather.apply(torch.cat([x, pad])).chunk(world)
        out.append(torch.cat([p[:n] for p, n in zip(parts, sizes)]))
    return tuple(out)


def stop_if_not_finite(fabric, losses: list, steps: list[int], checked: int, epoch: int, out) -> int:
    """A loss that became NaN or infinite stops the run (every rank alike) before anything is
    saved, so the last checkpoint stays the last good one. `losses[checked:]` are new, `steps`
    their optimiser steps; called where the loss is read anyway (log steps, the epoch's end), so
    it adds no sync of the device. -> how many losses are now checked."""

    new = losses[checked:]
    bad = ~torch.isfinite(torch.stack(new).float().cpu()) if new else torch.zeros(0, dtype=torch.bool)
    flag = float(bad.any())
    if fabric.world_size > 1:  # every rank stops alike
        flag = float(fabric.all_reduce(torch.tensor(flag, device=fabric.device), reduce_op="sum"))
    if flag == 0:
        return len(losses)
    first = int(bad.nonzero()[0]) if bool(bad.any()) else -1
    what = (
        f"{float(new[first])} at step {steps[checked + first]}"
        if first >= 0
        else f"not finite on another device by step {steps[-1] if steps else '?'}"
    )
    last = Path(out) / "checkpoints" / "last.pt"
    kept = f"{last} is the last good checkpoint" if last.is_file() else "no checkpoint was written"
    raise Fault(
        f"the training loss became {what} (epoch {epoch + 1}); stopped, {kept}. Lower --lr or set --grad-clip"
    )
