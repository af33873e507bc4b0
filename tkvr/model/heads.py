"""Classifier heads: the [C, D] matrix W in  logits = scale · z · Wᵀ.

  text        rows are the text encoder's embeddings of the class names (tkvr.model.text), frozen.
  random      rows ~ N(0, I), seeded, frozen.
  orthogonal  rows orthonormal, from the QR decomposition of a seeded Gaussian [D, C]; needs D >= C.
  lda         rows are multi-class LDA directions fitted on pre-trained visual features (fit_lda).
  learned     the vision-only baseline (the paper's Eq. 1): a plain trainable linear layer
              `logits = e · Wᵀ + b` on the video embedding e as the temporal module gives it (not
              normalised, no logit scale), W ~ U(±1/√D) as torch.nn.Linear initialises it (seeded),
              b = 0. Its first loss is ln C, as a randomly initialised classifier's should be.

The other heads compare directions: e is L2-normalised, the rows are L2-normalised, and the cosines
are multiplied by a logit scale: the pre-trained model's own (`logit_scale.exp()`, 100 for OpenAI
CLIP), kept as its log in `logit_scale` and trained with the visual encoder under `--logit-scale
learn` (the released code's VideoCLIP, modules/video_clip.py at 238c07f), fixed otherwise. It
travels with the checkpoint, so eval and predict score with the value the run trained to.
`--unfreeze-head` makes text / random / orthogonal / lda trainable (rows stay normalised in the
forward pass).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from tkvr.base.errors import TkvrError
from tkvr.model.settings import HEADS

LOGIT_SCALE = 100.0  # OpenAI CLIP's trained value; the default where a model brings none


def log_scale(scale: float, learn: bool = False) -> nn.Parameter:
    """The logit scale as a parameter holding its log (CLIP's parametrisation: it stays positive)."""
    return nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn)


def random_matrix(c: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(c, d, generator=g), dim=-1)  # [C, D]


def orthogonal_matrix(c: int, d: int, seed: int = 0) -> torch.Tensor:
    if d < c:
        raise TkvrError(
            f"--head orthogonal needs embedding width D >= number of classes C, "
            f"got D={d} < C={c}: use --head text or random, or fewer classes"
        )
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, c, generator=g, dtype=torch.float64))  # [D, C], orthonormal columns
    return q.T.contiguous().float()  # [C, D]


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Nearest-class-mean head: the L2-normalised mean of each class's normalised features. [C, D]"""
    x = F.normalize(features.float(), dim=-1)
    m = torch.zeros(num_classes, x.shape[1]).index_add_(0, labels.long(), x)
    return F.normalize(m, dim=-1)


def one_per_class(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of one sample per class, drawn with a seeded generator (a 1-shot sample of
    already extracted features). [C]"""
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            (labels == k).nonzero().flatten()[torch.randint(int((labels == k).sum()), (), generator=g)]
            for k in range(num_classes)
        ]
    )


def fit_lda(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float | None = None
) -> torch.Tensor:
    """Multi-class LDA directions W[c] = Σ⁻¹ μ_c from features [N, D] and labels [N].

    Σ is the pooled within-class covariance, shrunk towards (tr Σ / D)·I so it stays invertible
    when there are fewer samples than dimensions. `shrinkage=None` picks the weight with the
    Ledoit-Wolf estimate; a float in [0, 1] fixes it. Rows are L2-normalised (the head's format).
    """
    x = F.normalize(features.double(), dim=-1)  # [N, D]; the model compares normalised embeddings
    y = labels.long()
    n, d = x.shape
    present = torch.bincount(y, minlength=num_classes)
    if (present == 0).any():
        missing = (present == 0).nonzero().flatten().tolist()[:5]
        raise TkvrError(f"--head lda: no features for class ids {missing}; every class needs samples")
    means = torch.zeros(num_classes, d, dtype=x.dtype).index_add_(0, y, x) / present[:, None]  # [C, D]
    xc = x - means[y]  # within-class residuals [N, D]
    s = xc.T @ xc / n  # [D, D]
    mu = torch.trace(s) / d
    if shrinkage is None:
        # Ledoit-Wolf: weight = (mean over samples of ||x x^T - S||^2 / N) / ||S - mu I||^2, clipped.
        num = ((xc**2).sum(1) ** 2).sum() / n - (s**2).sum()
        den = ((s - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum()
        shrinkage = float((num / n / den).clamp(0, 1)) if den > 0 else 1.0
    if mu <= 0:  # one sample per class: no within-class spread, LDA falls back to class means
        cov = torch.eye(d, dtype=x.dtype)
    else:
        cov = (1 - shrinkage) * s + shrinkage * mu * torch.eye(d, dtype=x.dtype)
    w = torch.linalg.solve(cov, means.T).T  # [C, D]
    return F.normalize(w, dim=-1).float()


def linear_init(c: int, d: int, seed: int = 0) -> torch.Tensor:
    """torch.nn.Linear's default weight init, U(-1/√D, 1/√D), from a seeded generator. [C, D]"""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(c, d, generator=g) * 2 - 1) / d**0.5


class Head(nn.Module):
    """logits [B, C] from video embeddings e [B, D] (as the temporal module gives them).

    `cosine_learned` rebuilds the learned head of checkpoints written before it became a plain
    linear layer (100 · normalise(e) · Wᵀ + b), so that they still evaluate as they trained.
    `bank` [K, C, D] (--template-mode augment): one frozen classifier per template; in training
    the head scores against `bank[pick]` (`begin_step` draws `pick` each step), in eval against
    `weight`, their average."""

    def __init__(
        self,
        weight: torch.Tensor,
        kind: str,
        trainable: bool = False,
        scale: float = LOGIT_SCALE,
        cosine_learned: bool = False,
        bank: torch.Tensor | None = None,
        learn_scale: bool = False,
    ):
        super().__init__()
        if kind not in HEADS:
            raise TkvrError(f"--head {kind!r} is not known: choose one of {', '.join(HEADS)}")
        self.kind = kind
        self.linear = kind == "learned" and not cosine_learned
        # the learned head is a plain linear layer: no temperature
        self.logit_scale = None if self.linear else log_scale(scale, learn_scale)
        trainable = trainable or kind == "learned"
        w = weight.detach().float().clone()
        if kind != "learned":
            w = F.normalize(w, dim=-1)
        self.weight = nn.Parameter(w, requires_grad=trainable)  # [C, D]
        self.bias = nn.Parameter(torch.zeros(w.shape[0])) if kind == "learned" else None
        if bank is not None:
            self.register_buffer("bank", F.normalize(bank.detach().float(), dim=-1).clone())  # [K, C, D]
        else:
            self.bank = None
        self.pick = 0

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def scale(self) -> torch.Tensor | float:
        return 1.0 if self.logit_scale is None else self.logit_scale.exp()

    def matrix(self) -> torch.Tensor:
        """The [C, D] matrix this step scores against."""
        if self.bank is not None and self.training:
            return self.bank[self.pick]  # this step's template
        # A frozen matrix was normalised once at construction; a trained one is re-normalised
        # each step (except the learned head, which keeps its own scale).
        return (
            F.normalize(self.weight, dim=-1) if self.weight.requires_grad and not self.linear else self.weight
        )

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if not self.linear:
            e = F.normalize(e, dim=-1)
        logits = e @ self.matrix().to(e.dtype).T  # [B, C]
        if self.logit_scale is not None:
            logits = self.logit_scale.exp().to(e.dtype) * logits
        if self.bias is not None:
            logits = logits + self.bias.to(e.dtype)
        return logits

    def text_for(self, y: torch.Tensor) -> torch.Tensor:
        """[B, D]: the row of each label (the matching objective's text side; a text head)."""
        return self.matrix()[y]

    def begin_step(self, seed: int, step: int) -> None:
        """--template-mode augment: optimiser step `step` (1-based) trains against one template's
        classifier, drawn from (seed, step); the same on every rank and after a resume."""
        if self.bank is not None:
            self.pick = template_for_step(seed, step, self.bank.shape[0])

    def step_template(self):
        """The template this step trains against (steps.csv), or '' when there is no choice."""
        return self.pick if self.bank is not None else ""


class PromptHead(nn.Module):
    """A text head that keeps CLIP's text tower (`tower`) and computes its classifier from it.

    --template-mode learn (CoOp-style): `length` M learned context vectors stand in front of each
    class name's tokens ('X X ... X <name>.'); the frozen tower turns these prompts into the
    classifier [C, D] at every training step, and gradients reach only the context.
    --text-online (the matching paradigm): no context, the prompts are `template` with the class
    name, and the tower itself trains (`train_tower`).

    In eval the classifier is computed once (when the head leaves training mode) and kept in the
    `weight` buffer, which checkpoints carry with the tower; new class names get the same context
    and tower (`set_classes`)."""

    def __init__(
        self,
        clip: nn.Module,
        tokenizer,
        names: list[str],
        length: int,
        seed: int = 0,
        scale: float = LOGIT_SCALE,
        template: str = "{}",
        train_tower: bool = False,
        learn_scale: bool = False,
    ):
        super().__init__()
        self.tower = nn.ModuleDict(
            {
                "token_embedding": clip.token_embedding,
                "transformer": clip.transformer,
                "ln_final": clip.ln_final,
            }
        )
        self.tower.register_parameter("positional_embedding", clip.positional_embedding)
        proj = clip.text_projection  # a matrix, a Linear, or None, by model
        if isinstance(proj, nn.Module):
            self.tower["proj"] = proj
        elif proj is not None:
            self.tower.register_parameter("text_projection", proj)
        self.tower.requires_grad_(train_tower)
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.pool_type, self.eos_id = clip.text_pool_type, getattr(clip, "text_eos_id", None)
        self.logit_scale = log_scale(scale, learn_scale)
        self.length, self.template = length, template
        width = clip.token_embedding.weight.shape[1]
        g = torch.Generator().manual_seed(seed)
        # [M, W], CoOp's init
        self.ctx = nn.Parameter(torch.randn(length, width, generator=g) * 0.02) if length else None
        self.set_classes(names, tokenizer)

    def set_classes(self, names: list[str], tokenizer) -> None:
        """The prompts of class `names` in readable form (tkvr.data.classes.prompt_name)."""
        if self.length:  # the X positions take the learned context
            prompts = [" ".join(["X"] * self.length) + " " + c + "." for c in names]
        else:
            prompts = [self.template.format(c) for c in names]
        tokens = tokenizer(prompts)  # [C, L]
        full = (tokens != 0).sum(1) >= tokens.shape[1]  # filled to the end: the name was cut
        if full.any():
            flag = "--prompt-length" if self.length else "--template"
            value = self.length if self.length else repr(self.template)
            raise TkvrError(
                f"{flag} {value}: the prompt for {names[int(full.nonzero()[0])]!r} does not fit the "
                f"text encoder's {tokens.shape[1]} tokens; use a shorter {flag}"
            )
        device = self.tower["ln_final"].weight.device
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        with torch.no_grad():
            self.register_buffer("weight", self.classifier())  # [C, D]

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def classifier(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """[C, D] (or the rows `ids`), L2-normalised: the prompts through the tower."""
        from open_clip.transformer import (
            text_global_pool,  # deferred: open_clip is slow to import
        )

        t = self.tower
        tokens = self.tokens if ids is None else self.tokens[ids]
        x = t["token_embedding"](tokens)  # [C, L, W]
        if self.ctx is not None:
            ctx = self.ctx.to(x.dtype).expand(x.shape[0], -1, -1)  # [C, M, W]
            x = torch.cat([x[:, :1], ctx, x[:, 1 + self.length :]], dim=1)  # SOT, context, name, EOT
        cast = t["transformer"].get_cast_dtype()
        x = x.to(cast) + t.positional_embedding.to(cast)
        x = t["ln_final"](t["transformer"](x, attn_mask=self.attn_mask))
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)  # [C, W]
        if "proj" in t:
            x = t["proj"](x)
        elif getattr(t, "text_projection", None) is not None:
            x = x @ t.text_projection
        return F.normalize(x.float(), dim=-1)

    def text_for(self, y: torch.Tensor) -> torch.Tensor:
        """[B, D]: the class text embedding of each label, only the batch's classes encoded."""
        ids, inverse = y.unique(return_inverse=True)
        return self.classifier(ids)[inverse]

    def refresh(self) -> None:
        with torch.no_grad():
            self.weight.copy_(self.classifier())

    def train(self, mode: bool = True):
        super().train(mode)
        if not mode:
            self.refresh()
        return self

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        w = self.classifier() if self.training else self.weight  # [C, D]
        return self.scale.to(e.dtype) * F.normalize(e, dim=-1) @ w.to(e.dtype).T  # [B, C]

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp()


def template_for_step(seed: int, step: int, k: int) -> int:
    """--template-mode augment: which of k templates optimiser step `step` trains against. A pure
    function of (seed, step): the same on every rank, the same after a resume."""
    return random.Random(f"{seed}:{step}").randrange(k)


def head_matrix(kind: str, num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """The matrices that need neither text nor features."""
    if kind == "random":
        return random_matrix(num_classes, dim, seed)
    if kind == "learned":
        return linear_init(num_classes, dim, seed)
    if kind == "orthogonal":
        return orthogonal_matrix(num_classes, dim, seed)
    raise TkvrError(f"--head {kind} needs {'class-name embeddings' if kind == 'text' else 'visual features'}")
