"""The video model: visual encoder per frame -> temporal module -> classifier head, and the training
policy it owns (loss, parameter groups, per-step head state); built from a run's settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tkvr.base.errors import TkvrError
from tkvr.data.classes import prompt_name
from tkvr.model.backbones import BUILD_SEED, Backbone, TimmVisual, build_backbone
from tkvr.model.heads import LOGIT_SCALE, Head, PromptHead, head_matrix
from tkvr.model.objectives import matching_loss
from tkvr.model.temporal import build_temporal
from tkvr.model.text import class_embeddings, load_embeddings


class FrameContext:
    """The number of frames T of the batch being encoded, shared with modules inside the backbone
    (T1D, TokenT1D) that must regroup [B*T, ...] into [B, T, ...]."""

    def __init__(self):
        self.t = 1


class VideoModel(nn.Module):
    """clip [B, T, C, H, W] -> frame features [B*T, D] -> video embedding [B, D] -> logits [B, C].

    `encode` gives the embedding L2-normalised (features for LDA, retrieval); the head gets it as
    the temporal module gives it and normalises it itself where it compares directions."""

    def __init__(self, visual: nn.Module, temporal: nn.Module, head: nn.Module, ctx: FrameContext):
        super().__init__()
        self.visual = visual
        self.temporal = temporal
        self.head = head
        self.ctx = ctx

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        self.ctx.t = t
        f = self.visual(x.flatten(0, 1))  # [B*T, D]
        f = f.reshape(b, t, -1)  # [B, T, D]
        return self.temporal(f)  # [B, D]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(x), dim=-1)  # [B, D]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """logits [B, C]; with labels y (the matching objective) the normalised video embeddings
        [B, D] and the text embeddings of their classes [B, D] instead."""
        e = self.embed(x)
        if y is None:
            return self.head(e)
        return F.normalize(e, dim=-1), self.head.text_for(y)

    # ---- the training policy the model owns; the engine only calls these
    objective = "recognition"  # or "matching" (set by build from --objective)
    label_smoothing = 0.0  # of the recognition loss (--label-smoothing)
    match_group = None  # of the matching loss (--match-group)

    def loss(self, run, x: torch.Tensor, y: torch.Tensor, gather=None) -> torch.Tensor:
        """The training loss of a batch: `run` is this model as the loop runs it (wrapped by
        Fabric, so the forward pass goes through the strategy); `gather` collects the matching
        objective's embeddings from every process (or None)."""

        if self.objective == "matching":
            v, t = run(x, y)  # [B, D] each
            return matching_loss(v.float(), t.float(), y, gather, self.head.scale, self.match_group)
        return F.cross_entropy(run(x).float(), y, label_smoothing=self.label_smoothing)  # logits [B, C]

    def compile_visual(self) -> None:
        """--compile: torch.compile the visual encoder, where nearly all the compute is."""
        self.visual = torch.compile(self.visual)

    def begin_step(self, step: int, seed: int) -> None:
        """Per-step head state, set by the head itself (--template-mode augment: the template of
        optimiser step `step`, 1-based). Heads without per-step state do nothing."""
        if hasattr(self.head, "begin_step"):
            self.head.begin_step(seed, step)

    def step_template(self):
        """The template this step trains against (for steps.csv), or '' when there is no choice."""
        return self.head.step_template() if hasattr(self.head, "step_template") else ""

    def param_groups(self, lr: float, ratio: float, weight_decay: float, decay: str = "all") -> list[dict]:
        """Up to four groups: (backbone | new) x (decay | no decay). New = the temporal module,
        temporal convolutions inserted into the backbone, a timm tower's projection, and the head
        when it trains (its context vectors). The logit scale and an online text tower train like
        the visual encoder (the released train.py at 238c07f puts the logit scale in the CLIP group).
        decay: all (the released train.py at 238c07f: AdamW's decay on every parameter) or
        matrices (not on norms, biases, embeddings, positions, the head)."""
        groups = {(new, decay): [] for new in (False, True) for decay in (False, True)}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            clip_like = name.startswith("head.tower.") or name == "head.logit_scale"
            new = (
                name.startswith(("temporal.", "head.", "visual.project.")) or ".tconv." in name
            ) and not clip_like
            no_decay = decay == "matrices" and (
                p.ndim < 2
                or "embedding" in name
                or name.endswith(("pos", ".bias"))
                or (name.startswith("head.") and not clip_like)
            )
            groups[(new, not no_decay)].append(p)
        return [
            {
                "params": params,
                "lr": lr * (ratio if new else 1.0),
                "weight_decay": weight_decay if decay else 0.0,
            }
            for (new, decay), params in groups.items()
            if params
        ]


def unwrap(model: nn.Module) -> nn.Module:
    """The VideoModel itself, also when Fabric has wrapped it (the one place that knows the wrapper)."""
    return getattr(model, "module", model)


def preprocess_of(model: nn.Module) -> dict:
    """Size, mean and std of a VideoModel's visual encoder (also when Fabric wraps the model)."""
    from open_clip import (
        get_model_preprocess_cfg,  # deferred: open_clip is slow to import
    )

    inner = unwrap(model)
    return dict(get_model_preprocess_cfg(inner.visual))


def build_model(backbone: Backbone, m, head: nn.Module, visual: nn.Module | None = None) -> VideoModel:
    """Wrap a backbone's visual encoder (or `visual`, a TimmVisual) into a VideoModel with the
    temporal module the model settings `m` (a ModelConfig) name. The text tower is not part of it."""

    ctx = FrameContext()
    dim = visual.output_dim if visual is not None else backbone.dim
    visual = visual if visual is not None else backbone.clip.visual
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED + 1)
        module = build_temporal(m, visual, dim, ctx, text_size(backbone))
    return VideoModel(visual, module, head, ctx)


def text_size(backbone: Backbone) -> tuple[int, int]:
    """(width, context length) of the backbone's text tower: the released temporal transformer
    takes its heads (width / 64) and its position table (the context length) from them."""
    clip = backbone.clip
    tower = getattr(clip, "transformer", None)
    width = getattr(tower, "width", None) or getattr(getattr(clip, "text", None), "width", 512)
    return int(width), int(getattr(clip, "context_length", 77))


def build(
    m,
    classes: list[str],
    templates: list[str],
    *,
    seed: int,
    grad_checkpointing: bool = False,
    weights: bool = True,
    embeddings=None,
    cosine_learned: bool = False,
):
    """(Backbone, VideoModel) for `classes` from the model settings `m` (a ModelConfig): backbone,
    head, temporal module; `seed` draws the random heads and learned prompts. `weights=False`
    builds the architecture only (a checkpoint supplies the weights). `embeddings` [C, D]
    overrides the head's matrix."""

    backbone = build_backbone(m.backbone, m.pretrained if weights else "none")
    bank, visual, width = None, None, backbone.dim
    if m.visual:  # the vision-only head reads the timm features directly; the others need D
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED + 2)
            visual = TimmVisual(
                m.visual, weights and m.visual_pretrained, None if m.head == "learned" else backbone.dim
            )
        width = visual.output_dim
    if embeddings is None and m.template_mode != "learn" and not m.text_online:
        if m.head == "text":
            if m.embeddings:
                saved = load_embeddings(m.embeddings, classes, backbone.dim)
                embeddings = saved["embeddings"]
                check_encoder(m.text_encoder, m.embeddings, saved.get("text_encoder"))
            elif m.template_mode == "augment":
                bank = class_embeddings(
                    backbone, classes, templates, m.text_encoder, per_template=True, names=m.class_names
                )
                embeddings = F.normalize(bank.mean(0), dim=-1)  # the average: what eval scores with
            else:
                embeddings = class_embeddings(
                    backbone, classes, templates, m.text_encoder, names=m.class_names
                )
        elif m.head == "lda":  # a placeholder: the LDA fit replaces it from visual features
            embeddings = head_matrix("random", len(classes), width, seed)
        else:
            embeddings = head_matrix(m.head, len(classes), width, seed)
    scale, learn = logit_scale(backbone, m.logit_scale)
    if m.template_mode == "learn":  # the context starts random; a checkpoint's weights replace it
        head = PromptHead(
            backbone.clip,
            backbone.tokenizer,
            [prompt_name(c, m.class_names) for c in classes],
            m.prompt_length,
            seed,
            scale=scale,
            learn_scale=learn,
        )
    elif m.text_online:  # the matching paradigm's online text encoder: the tower trains with the model
        head = PromptHead(
            backbone.clip,
            backbone.tokenizer,
            [prompt_name(c, m.class_names) for c in classes],
            0,
            template=templates[0],
            train_tower=True,
            scale=scale,
            learn_scale=learn,
        )
    else:
        if m.template_mode == "augment" and bank is None:  # a checkpoint's weights will fill it
            bank = torch.zeros(len(templates), *embeddings.shape)
        head = Head(
            embeddings,
            m.head,
            trainable=m.unfreeze_head,
            cosine_learned=cosine_learned,
            bank=bank,
            scale=100.0 if cosine_learned else scale,
            learn_scale=learn and not cosine_learned,
        )
    model = build_model(backbone, m, head, visual)
    model.objective = m.objective
    model.label_smoothing = m.label_smoothing
    model.match_group = m.match_group
    if grad_checkpointing:
        model.visual.set_grad_checkpointing(True)
    return backbone, model


def check_encoder(asked: str | None, path: str, made_by: str | None) -> None:
    """--text-encoder must be the encoder that made --embeddings (or not given: a run takes it
    from the file, so new class names get the same encoder)."""
    if asked and made_by != asked:
        raise TkvrError(
            f"--text-encoder {asked}: --embeddings {path} was made by "
            f"{made_by or 'CLIP'}'s text encoder; give the one that made it, or neither"
        )


def logit_scale(backbone: Backbone, setting: str | float) -> tuple[float, bool]:
    """(start value, trained?) of the cosine heads' temperature for --logit-scale: learn and fixed
    start from the model's own `logit_scale.exp()` (100 for OpenAI CLIP, about 21.7 for the toy
    CLIP), a number is used as given (`setting`: ModelConfig.logit_scale, typed)."""

    if not isinstance(setting, str):
        return setting, False
    own = getattr(backbone.clip, "logit_scale", None)
    value = float(own.detach().float().exp()) if isinstance(own, torch.Tensor) else LOGIT_SCALE
    return value, setting == "learn"


def swap_classes(
    model: nn.Module,
    text: Backbone,
    classes: list[str],
    templates: list[str],
    text_encoder: str | None = None,
    names: str = "words",
) -> nn.Module:
    """The paper's zero-shot swap: `model` gets a new frozen text head whose rows are the class
    names embedded by `text`'s text encoder (or by the text-only `text_encoder` the run used),
    read as `names` says (--class-names). Works on a Fabric-wrapped model; the head goes to the
    device of the one it replaces."""

    inner = unwrap(model)
    if isinstance(inner.head, PromptHead):  # the learned context goes in front of the new names
        inner.head.set_classes([prompt_name(c, names) for c in classes], text.tokenizer)
        return model
    device = inner.head.weight.device
    # the scale the run trained to goes with the new names (the learned head has none: 100, CLIP's)
    scale = float(inner.head.scale.detach()) if inner.head.logit_scale is not None else LOGIT_SCALE
    emb = class_embeddings(text, classes, templates, text_encoder, names=names)
    inner.head = Head(emb, "text", scale=scale).to(device)
    return model
