"""A model's cost: GFLOPs per view and parameters, in tkvr's convention (measured) and the paper's
(per frame x frames, the visual encoder alone); an architecture built on the meta device.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from tkvr.model.backbones import TimmVisual, build_backbone
from tkvr.model.heads import Head
from tkvr.model.temporal import TTrans
from tkvr.model.video_model import build_model, unwrap


@torch.no_grad()
def model_cost(model, frames: int, size: int, device="cpu") -> tuple[float, float]:
    """(GFLOPs of one view, parameters in millions), the paper's Tables 7 and 12. FLOPs are torch's
    count of matrix products and convolutions, 2 per multiply-add (halve them for the
    multiply-accumulate convention of many video papers); counted in training mode, where
    attention runs through operations the counter sees (its fused inference path does not)."""

    def cpu_attention(query, key, value, *args, **kwargs) -> int:  # the counter passes shapes
        # torch counts the CUDA attention kernels but not the CPU one: the same two matrix products
        return sdpa_flop_count(query, key, value)

    inner = unwrap(model)
    was = inner.training
    inner.train()
    inner.head.eval()  # a learned prompt's classifier is computed once, not per view
    try:
        with FlopCounterMode(
            display=False,
            custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention},
        ) as counter:
            inner(torch.zeros(1, frames, 3, size, size, device=device))  # one view [1, T, 3, S, S]
    finally:
        inner.train(was)
    # parameters at inference: a learned prompt's frozen text tower only made its classifier
    params = sum(p.numel() for n, p in inner.named_parameters() if not n.startswith("head.tower."))
    if not isinstance(inner.head.weight, torch.nn.Parameter):  # a classifier kept as a buffer
        params += inner.head.weight.numel()
    return counter.get_total_flops() / 1e9, params / 1e6


def paper_cost(visual, frames: int, temporal=None) -> tuple[float, float] | None:
    """(GFLOPs of one view, parameters in millions) in the convention of the paper's Tables 7 and
    12, or None for a visual encoder that is not a CLIP ViT. The paper's figures are reproduced
    by counting multiply-accumulates of the patch embedding and of the MLP linears of every block
    only (attention, norms and the head left out), and the parameters of the same layers:
    ViT-B/16 @224 -> 11.3 G, 57.3 M; ViT-L/14 @224 -> 51.9 G, 202.1 M; @336 -> 116.5 G. A
    temporal transformer (`temporal`, a TTrans) adds its MLP linears by the same rule, once per
    frame token: with it Table 7's 32-frame ViT-L/14 row counts 1661.5 G (the paper prints 1662)
    and 230.4 M (230.7); docs/paper.md, Table 7, has the figures. Counted from the layers'
    shapes; the token count is the model's own (its position table), so a view is `frames`
    images at the model's input size."""

    patch = getattr(visual, "conv1", None)
    pos = getattr(visual, "positional_embedding", None)
    if not isinstance(patch, nn.Conv2d) or not hasattr(visual, "transformer") or pos is None:
        return None
    tokens = pos.shape[0]  # patches (+ the class token)
    patches = tokens - (1 if getattr(visual, "class_embedding", None) is not None else 0)
    mlp = [
        m for n, m in visual.transformer.named_modules() if isinstance(m, nn.Linear) and ".mlp." in f".{n}."
    ]
    kh, kw = patch.kernel_size
    macs = patches * patch.in_channels * kh * kw * patch.out_channels  # the patch embedding
    macs += tokens * sum(m.in_features * m.out_features for m in mlp)
    params = sum(p.numel() for m in [patch, *mlp] for p in m.parameters())
    macs *= frames
    if isinstance(temporal, TTrans):  # its MLPs see one token a frame: [T, D] -> [T, 4D] -> [T, D]
        fc = [m for layer in temporal.encoder.layers for m in (layer.linear1, layer.linear2)]
        macs += frames * sum(m.in_features * m.out_features for m in fc)
        params += sum(p.numel() for m in fc for p in m.parameters())
    return macs / 1e9, params / 1e6


def costs(model, frames: int, size: int, device="cpu") -> dict:
    """Both conventions of a model's cost: tkvr's full count (`gflops_per_view`, `params_m`)
    and the paper's (`gflops_per_frame_paper`, `gflops_per_view_paper` = frames x that,
    `params_m_paper`; None where it does not apply). The paper quotes ViT-B/16 as 11.3 GFLOPs:
    one frame; its 32-frame ViT-L/14 row is 32 x 51.9 + 0.9 (the temporal transformer's MLPs)
    = 1661.5 GFLOPs a view, printed 1662."""
    gflops, params = model_cost(model, frames, size, device)
    inner = unwrap(model)
    paper = paper_cost(inner.visual, frames, inner.temporal)
    frame = paper_cost(inner.visual, 1)
    return {
        "gflops_per_view": gflops,
        "params_m": params,
        "gflops_per_frame_paper": round(frame[0], 1) if frame else None,
        "gflops_per_view_paper": round(paper[0], 1) if paper else None,
        "params_m_paper": round(paper[1], 1) if paper else None,
    }


def cost_of(cfg, num_classes: int) -> dict:
    """Both conventions of the cost of one view of the model a config describes (tkvr's full
    count and the paper's), counted on an architecture without weights or storage."""

    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained, meta=True)
    with torch.device("meta"):
        visual = (
            TimmVisual(m.visual, False, None if m.head == "learned" else backbone.dim) if m.visual else None
        )
        width = visual.output_dim if visual is not None else backbone.dim
        # a placeholder of the head's shape: a learned prompt or an online tower also scores
        # against a [C, D] matrix at inference
        head = Head(torch.zeros(num_classes, width), "learned" if m.head == "learned" else "text")
        model = build_model(backbone, m, head, visual)
    size = (visual.preprocess_cfg if visual is not None else backbone.preprocess)["size"]
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    cost = costs(model, m.frames, size, "meta")
    return {k: round(v, 3) if k in ("gflops_per_view", "params_m") else v for k, v in cost.items()}
