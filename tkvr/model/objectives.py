"""The matching paradigm's loss (the paper's Table 6, ActionCLIP-style).

A batch of B videos with labels y gives normalised video embeddings v [B, D] and the text
embeddings of their class names t [B, D]. Similarities are CLIP's: 100 · v · tᵀ. Every video and
text of the same class is a positive (a batch often holds a class twice), so the targets are the
rows of the same-label matrix, normalised; the loss is the mean of the video->text and
text->video cross-entropies against them. With `gather` (--batch-gather; the run layer passes
`tkvr.run.collective.gather_with_grad`) each rank compares its own videos and texts with those of
every rank: the loss of the local rows, whose mean over ranks
is the loss of one process on the concatenated batch, and whose gradients, averaged by DDP, are
that process's gradients (both tested on 2 CPU processes).

With `group` (--match-group N) the clips of a step are contrasted in consecutive groups of N, each
group its own loss, and the losses averaged: the loss of N clips a GPU on B / N GPUs without
batch gather (the paper's Table 6 rows without it: 128 clips on 8 GPUs, 16 each), on one device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALE = 100.0


def matching_loss(
    v: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    gather=None,
    scale: float = SCALE,
    group: int | None = None,
):
    if group and len(v) > group:  # [B, D] -> groups of `group` rows, each contrasted on its own
        parts = [
            matching_loss(*(a[i : i + group] for a in (v, t, y)), None, scale)
            for i in range(0, len(v), group)
        ]
        return torch.stack(parts).mean()
    v_all, t_all, y_all = gather(v, t, y) if gather else (v, t, y)
    target = (y[:, None] == y_all[None, :]).float()  # [b, N]
    target = target / target.sum(1, keepdim=True)
    to_text = scale * v @ t_all.T  # [b, N]
    to_video = scale * t @ v_all.T  # [b, N]
    return 0.5 * (F.cross_entropy(to_text, target) + F.cross_entropy(to_video, target))
