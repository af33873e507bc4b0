"""Temporal modules: how T frame embeddings become one video embedding.

  tap        mean over frames (order-blind).
  t1d        ResNet backbones: a channel-wise (depthwise) temporal 1D convolution before every
             bottleneck block of the last two stages; frames are then averaged.
  token-t1d  ViT backbones: a depthwise temporal 1D convolution over the [class] token inside
             chosen transformer blocks; frames then averaged. Two forms (--t1d-form):
               released  (default) the authors' TokenT1D (modules/temporal_modeling.py and
                         clip/model.py at 238c07f): in every block, before the attention
                         and before the MLP, starting as a shift of a quarter of the channels one
                         frame left and a quarter one frame right (the rest unchanged);
               identity  starts as the identity, at the input of the last half of the blocks.
  t-trans    a temporal transformer (6 layers by default) over the frame embeddings with learned
             frame position embeddings. Two forms (--t-trans-form):
               released  (default) the authors' released code (modules/video_clip.py at 238c07f): mean over
                         T of x + Transformer(x + pos), positions std 0.02, Linear weights
                         N(0, 0.02) (their init);
               near-tap  tkvr's: its output is added as a residual to the frame mean, through a
                         projection initialised near zero: at initialisation the module is TAP
                         within 1%, so the pre-trained embedding the frozen text head was made
                         for is not disturbed at step 0; positions std 0.2;
               clip      the released module itself (modules/video_clip.py at 238c07f, `video_header`
                         with `Transf`): CLIP-style blocks (QuickGELU, LayerNorm eps 1e-12, heads
                         = the text width / 64), a position table as long as the text context,
                         the same formula; its parameter names are the released file's, so a
                         released model (`tkvr convert`) runs with exactly its numerics.

T1D's convolutions start as the identity (centre tap 1, others 0): inserting them does not
change a pretrained backbone's output until training moves them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from tkvr.base.errors import TkvrError
from tkvr.model.settings import TEMPORAL


class TAP(nn.Module):
    def forward(self, f: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, D]
        return f.mean(dim=1)


class TemporalConv(nn.Module):
    """Depthwise conv over T of [B*T, C, ...] features. init identity: every channel passes
    unchanged; init shift (the released TokenT1D, 238c07f): out[t] = in[t+1] for the first quarter of the
    channels, in[t-1] for the second, unchanged for the rest (kernel 3)."""

    def __init__(self, channels: int, ctx, kernel: int = 3, init: str = "identity"):
        super().__init__()
        self.ctx = ctx
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, kernel // 2] = 1.0
            if init == "shift":
                fold = channels // 4
                self.conv.weight[: 2 * fold] = 0.0
                self.conv.weight[:fold, 0, kernel // 2 + 1] = 1.0  # the next frame's value
                self.conv.weight[fold : 2 * fold, 0, kernel // 2 - 1] = 1.0  # the previous frame's

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B*T, C, *S]
        t = self.ctx.t
        bt, c, *s = x.shape
        y = x.reshape(bt // t, t, c, -1).permute(0, 3, 2, 1)  # [B, S, C, T]
        y = y.reshape(-1, c, t)  # [B*S, C, T]
        y = self.conv(y).reshape(bt // t, -1, c, t).permute(0, 3, 2, 1)  # [B, T, C, S]
        return y.reshape(bt, c, *s)


class T1DBlock(nn.Module):
    """A ResNet bottleneck preceded by a temporal conv on its input."""

    def __init__(self, block: nn.Module, channels: int, ctx):
        super().__init__()
        self.tconv = TemporalConv(channels, ctx)
        self.block = block

    def forward(self, x):
        return self.block(self.tconv(x))


class TokenT1DBlock(nn.Module):
    """A ViT block whose [class] token is mixed over time.

    form released (the authors' TokenT1D): the convolution starts as a channel shift and mixes the
    token before the attention and again before the MLP (the same weights at both points), in an
    open_clip ResidualAttentionBlock. form identity (tkvr's): the convolution starts as the
    identity and mixes the token once, at the block's input."""

    def __init__(self, block: nn.Module, width: int, ctx, batch_first: bool, form: str = "released"):
        super().__init__()
        self.tconv = TemporalConv(width, ctx, init="shift" if form == "released" else "identity")
        self.block = block
        self.batch_first = batch_first
        self.form = form

    def mix(self, x: torch.Tensor) -> torch.Tensor:  # [B*T, L, W] (or [L, B*T, W])
        cls = x[:, 0] if self.batch_first else x[0]  # [B*T, W]
        cls = self.tconv(cls)
        if self.batch_first:
            return torch.cat([cls[:, None], x[:, 1:]], dim=1)
        return torch.cat([cls[None], x[1:]], dim=0)

    def forward(self, x, k_x=None, v_x=None, attn_mask=None):
        b = self.block
        if self.form != "released":
            return b(self.mix(x), k_x, v_x, attn_mask=attn_mask)
        x = self.mix(x)
        x = x + b.ls_1(b.attention(q_x=b.ln_1(x), attn_mask=attn_mask))
        x = self.mix(x)
        return x + b.ls_2(b.mlp(b.ln_2(x)))


class TTrans(nn.Module):
    def __init__(
        self, dim: int, frames: int, layers: int = 6, heads: int | None = None, form: str = "released"
    ):
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.form = form
        # positions are drawn first, then the layers: the order the near-tap form always had, so
        # a seed builds the same module as before the released form existed
        std = 0.02 if form == "released" else 0.2  # near-tap: large enough to tell frames apart
        self.pos = nn.Parameter(torch.randn(frames, dim) * std)  # [T, D]
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * 4, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        if form == "released":
            with torch.no_grad():
                for m in self.encoder.modules():
                    if isinstance(m, nn.Linear):
                        m.weight.normal_(0, 0.02)
                        m.bias.zero_()
            return
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():  # near zero: the module starts as (almost) TAP
            self.proj.weight.normal_(0, 1e-3 / dim**0.5)
            self.proj.bias.zero_()

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, D]
        t = f.shape[1]
        if t > self.pos.shape[0]:
            raise TkvrError(f"--frames: the t-trans module was built for {self.pos.shape[0]} frames, got {t}")
        h = self.encoder(f + self.pos[:t])  # [B, T, D]
        if self.form == "released":
            return (f + h).mean(dim=1)
        return f.mean(dim=1) + self.proj(self.norm(h)).mean(dim=1)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ClipBlock(nn.Module):
    """The released temporal transformer's residual block (OpenAI CLIP's, LayerNorm eps 1e-12),
    on [T, B, D]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads)
        self.ln_1 = nn.LayerNorm(dim, eps=1e-12)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(dim, dim * 4), gelu=QuickGELU(), c_proj=nn.Linear(dim * 4, dim))
        )
        self.ln_2 = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ClipTTrans(nn.Module):
    """--t-trans-form clip: mean over T of x + Transformer(x + pos), the released module's own
    layout (`frame_position_embeddings`, `transformer.resblocks.N`) and init (Linear and
    position weights N(0, 0.02), biases 0)."""

    def __init__(self, dim: int, layers: int = 6, heads: int = 8, positions: int = 77):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(positions, dim)  # [L, D]: as long as the text context
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[ClipBlock(dim, heads) for _ in range(layers)])
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, D]
        t = f.shape[1]
        if t > self.frame_position_embeddings.num_embeddings:
            raise TkvrError(
                f"--frames: the t-trans module has {self.frame_position_embeddings.num_embeddings} "
                f"positions, got {t} frames"
            )
        x = f + self.frame_position_embeddings.weight[:t]
        x = self.transformer.resblocks(x.transpose(0, 1)).transpose(0, 1)  # [T, B, D] through the blocks
        return (x + f).mean(dim=1)


def _is_vit(visual) -> bool:
    return hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks")


def _is_resnet(visual) -> bool:
    return hasattr(visual, "layer3") and hasattr(visual, "layer4")


def build_temporal(m, visual: nn.Module, dim: int, ctx, text: tuple[int, int] = (512, 77)) -> nn.Module:
    """The module that pools [B, T, D] -> [B, D] as the model settings `m` (a ModelConfig: --temporal,
    --frames, --temporal-layers, --t-trans-form, --t1d-form, --t1d-blocks) say; t1d / token-t1d also
    modify `visual` in place. `text`: the CLIP text tower's (width, context length), which size the
    clip form (heads = width / 64, as released)."""
    name, frames, layers, form = m.temporal, m.frames, m.temporal_layers, m.t_trans_form
    if name not in TEMPORAL:
        raise TkvrError(f"--temporal {name!r} is not known: choose one of {', '.join(TEMPORAL)}")
    if name == "tap":
        return TAP()
    if name == "t-trans" and form == "clip":
        return ClipTTrans(dim, layers, heads=max(1, text[0] // 64), positions=max(text[1], frames))
    if name == "t-trans":
        return TTrans(dim, frames, layers=layers, form=form)
    if name == "t1d":
        if not _is_resnet(visual):
            raise TkvrError(
                "--temporal t1d needs a ResNet backbone (RN50, tiny-rn, ...); "
                "for a ViT use --temporal token-t1d"
            )
        for stage in (visual.layer3, visual.layer4):
            for i, block in enumerate(stage):
                stage[i] = T1DBlock(block, block.conv1.in_channels, ctx)
        return TAP()
    # token-t1d
    if not _is_vit(visual):
        raise TkvrError("--temporal token-t1d needs a ViT backbone; for a ResNet use --temporal t1d")
    res = visual.transformer.resblocks
    n = len(res)
    t1d_form = m.t1d_form
    if m.t1d_blocks is not None:
        chosen = m.t1d_blocks
    else:  # released: every block (locations_list, clip/model.py at 238c07f); identity: the last half
        chosen = list(range(n)) if t1d_form == "released" else list(range(n // 2, n))
    bad = [b for b in chosen if not -n <= b < n]
    if bad:
        raise TkvrError(f"--t1d-blocks {bad}: the backbone has blocks 0..{n - 1}")
    width = visual.transformer.width
    batch_first = getattr(visual.transformer, "batch_first", True)
    for b in sorted({b % n for b in chosen}):
        if not hasattr(res[b], "ls_1") and t1d_form == "released":
            raise TkvrError("--t1d-form released needs open_clip's ViT blocks; use --t1d-form identity")
        res[b] = TokenT1DBlock(res[b], width, ctx, batch_first, t1d_form)
    return TAP()
