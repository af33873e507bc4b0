"""Backbones and the video model: open_clip visual encoder -> temporal module -> classifier head.

`--backbone` forms (see README "Backbones"):
  - OpenAI names (`RN50`, `ViT-B/16`, `ViT-L/14@336px`, ...): open_clip configs with the `openai`
    weights, QuickGELU as those weights were trained with;
  - any open_clip model name with `--pretrained TAG|PATH|none`;
  - `hf-hub:ORG/REPO`;
  - built-in `tiny` (ViT) and `tiny-rn` (ResNet): open_clip configs shipped in tkvr/configs,
    random init from a fixed seed, so two builds give the same weights; no download.
`--pretrained PATH` loads a local checkpoint file through open_clip's own loader, the same code
path as downloaded weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tkvr.errors import TkvrError
from tkvr.fileio import quiet_pickle
from tkvr.progress import say

OPENAI_NAMES = {
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}
BUILTIN = {"tiny": "tkvr-tiny", "tiny-rn": "tkvr-tiny-rn", "toy": "tkvr-toy"}
SHIPPED = {"toy": Path(__file__).parent / "assets" / "toy_clip.pt"}  # built-ins with weights
BUILD_SEED = 0
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class Backbone:
    """A built open_clip model plus what a run needs to know about it."""

    clip: nn.Module  # open_clip CLIP: .visual, .encode_text
    tokenizer: object
    name: str  # what the user typed
    pretrained: str | None
    preprocess: dict  # size, mean, std, interpolation, resize_mode (from the model)

    @property
    def dim(self) -> int:
        return int(self.clip.visual.output_dim)

    @property
    def image_size(self) -> int:
        size = self.preprocess["size"]
        return int(size[0] if isinstance(size, (tuple, list)) else size)


def _open_clip():
    import open_clip

    if not getattr(_open_clip, "registered", False):
        open_clip.add_model_config(CONFIG_DIR)
        _open_clip.registered = True
    return open_clip


def backbone_names() -> list[str]:
    return list(BUILTIN) + list(OPENAI_NAMES)


def _resolve(backbone: str, pretrained: str | None):
    """-> (open_clip model name, pretrained arg for open_clip or None, force_quick_gelu)."""
    oc = _open_clip()
    if pretrained is not None and pretrained.lower() == "none":
        pretrained = None
        explicit_none = True
    else:
        explicit_none = False
    if backbone in BUILTIN:
        if backbone in SHIPPED and pretrained is None and not explicit_none:
            if not SHIPPED[backbone].is_file():
                raise TkvrError(
                    f"--backbone {backbone}: its weights {SHIPPED[backbone]} are missing from the "
                    "installation; reinstall tkvr"
                )
            pretrained = str(SHIPPED[backbone])
        return BUILTIN[backbone], pretrained, False
    if backbone.startswith("hf-hub:"):
        if pretrained:
            raise TkvrError(
                f"--pretrained {pretrained}: an hf-hub: backbone brings its own weights; drop --pretrained"
            )
        return backbone, None, False
    if backbone in OPENAI_NAMES:
        if pretrained is None and not explicit_none:
            pretrained = "openai"
        return OPENAI_NAMES[backbone], pretrained, True
    name = backbone.replace("/", "-")
    if name in oc.list_models():
        if pretrained is None and not explicit_none:
            tags = oc.list_pretrained_tags_by_model(name)
            raise TkvrError(
                f"--backbone {backbone} needs --pretrained: one of {', '.join(tags) or '(no tags)'}, "
                "a checkpoint file PATH, or 'none' for random init"
            )
        return name, pretrained, False
    raise TkvrError(
        f"--backbone {backbone!r} is not known: use one of {', '.join(backbone_names())}, "
        "hf-hub:ORG/REPO, or an open_clip model name (python -c 'import open_clip; "
        "print(open_clip.list_models())')"
    )


def _cached(hub: str, names: list[str] | None = None) -> bool:
    """Whether open_clip's file (or one of `names`) for an hf-hub entry ('org/repo' or
    'org/repo/file') is in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, file = hub.partition("/")[2].partition("/")
    repo = hub.split("/")[0] + "/" + repo
    names = [file] if file else names or ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def quiet_hub():
    """The hub client logs every retry of a download; tkvr says what it fetches once itself."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _fetch(oc, name: str, tag: str):
    """Download (or find in the cache) the weights for a tag; a clear error when that fails."""
    cfg = oc.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = oc.list_pretrained_tags_by_model(name)
        raise TkvrError(
            f"--pretrained {tag!r} is neither a file nor a weight tag of {name}: "
            f"tags are {', '.join(tags) or '(none)'}; or pass --pretrained PATH"
        )
    where = (cfg.get("hf_hub") or "").rstrip("/")
    what = f"hf-hub {where} (open_clip_pytorch_model.bin)" if where else cfg.get("url", "?")
    missing = TkvrError(
        f"cannot get the weights of {name} ({tag}) from {what}: no network or not in the "
        "cache; download the file on a connected machine and pass --pretrained PATH"
    )
    if where and not _cached(where):
        # The hub client retries for about a minute without a word when there is no network.
        if not _online():
            raise missing
        say(f"weights of {name} ({tag}): downloading from {what} into the Hugging Face cache")
    try:
        with quiet_hub():
            oc.download_pretrained(cfg)
    except Exception:  # noqa: BLE001 - any download failure means the same thing to the user
        raise missing from None
    return bool(cfg.get("quick_gelu", False))


def build_backbone(backbone: str, pretrained: str | None = None, meta: bool = False) -> Backbone:
    """Build the open_clip model for `--backbone` / `--pretrained`. meta: the architecture only,
    its tensors without storage (shapes for counting its cost; instant even for ViT-L)."""
    oc = _open_clip()
    if meta:
        name, _, quick = _resolve(backbone, "none")
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # open_clip warns 'initialized randomly'
        try:
            with torch.device("meta"):
                model = oc.create_model(name, device="meta", force_quick_gelu=quick)
        finally:
            logger.setLevel(level)
        return Backbone(model, None, backbone, pretrained, dict(oc.get_model_preprocess_cfg(model)))
    name, weights, quick = _resolve(backbone, pretrained)
    path_given = weights is not None and (os.path.sep in weights or Path(weights).suffix != "")
    if weights is not None and not Path(weights).is_file():
        if path_given:
            raise TkvrError(f"--pretrained {weights}: no such file")
        quick = _fetch(oc, name, weights) or quick
    elif backbone.startswith("hf-hub:"):
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                model = oc.create_model(name)
        except Exception:  # noqa: BLE001
            raise TkvrError(
                f"cannot get {backbone} from the Hugging Face hub (no network or not "
                "cached); download it on a connected machine and pass the open_clip name "
                "with --pretrained PATH"
            ) from None
        return Backbone(model, oc.get_tokenizer(name), backbone, None, oc.get_model_preprocess_cfg(model))
    # A fixed seed for the random init (built-ins, 'none'), without touching the caller's RNG.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # open_clip warns 'initialized randomly' for the built-ins
    try:
        with torch.random.fork_rng(devices=[]), quiet_pickle():  # a raw pickle is refused below
            torch.manual_seed(BUILD_SEED)
            model = oc.create_model(name, pretrained=weights, force_quick_gelu=quick)
    except pickle.UnpicklingError:
        raise TkvrError(
            f"--pretrained {weights} was refused: it holds objects other than tensors and plain "
            "data (weights-only load); only load files you trust"
        ) from None
    except RuntimeError as e:
        if weights is not None and Path(weights).is_file():
            msg = str(e).strip().splitlines()[0][:200]
            raise TkvrError(f"--pretrained {weights} does not fit --backbone {backbone}: {msg}") from None
        raise
    finally:
        logger.setLevel(level)
    model.eval()
    return Backbone(
        model, oc.get_tokenizer(name), backbone, pretrained, dict(oc.get_model_preprocess_cfg(model))
    )


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

    def loss(self, run, x: torch.Tensor, y: torch.Tensor, gather=None) -> torch.Tensor:
        """The training loss of a batch: `run` is this model as the loop runs it (wrapped by
        Fabric, so the forward pass goes through the strategy); `gather` collects the matching
        objective's embeddings from every process (or None)."""
        from tkvr.objectives import matching_loss

        if self.objective == "matching":
            v, t = run(x, y)  # [B, D] each
            return matching_loss(v.float(), t.float(), y, gather, self.head.scale)
        return F.cross_entropy(run(x).float(), y)  # logits [B, C]

    def compile_visual(self) -> None:
        """--compile: torch.compile the visual encoder, where nearly all the compute is."""
        self.visual = torch.compile(self.visual)

    def begin_step(self, step: int, seed: int) -> None:
        """Per-step head state: --template-mode augment trains optimiser step `step` (1-based)
        against one template's classifier, drawn from (seed, step)."""
        from tkvr.heads import template_for_step

        if getattr(self.head, "bank", None) is not None:
            self.head.pick = template_for_step(seed, step, self.head.bank.shape[0])

    def step_template(self):
        """The template this step trains against (for steps.csv), or '' when there is no choice."""
        return self.head.pick if getattr(self.head, "bank", None) is not None else ""

    def param_groups(self, lr: float, ratio: float, weight_decay: float, decay: str = "all") -> list[dict]:
        """Up to four groups: (backbone | new) x (decay | no decay). New = the temporal module,
        temporal convolutions inserted into the backbone, a timm tower's projection, and the head
        when it trains (its context vectors). The logit scale and an online text tower train like
        the visual encoder (the released code puts the logit scale in the CLIP group).
        decay: all (the released code: AdamW's decay on every parameter) or matrices (not on norms,
        biases, embeddings, positions, the head)."""
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
    from open_clip import get_model_preprocess_cfg

    inner = unwrap(model)
    return dict(get_model_preprocess_cfg(inner.visual))


def timm_weights_or_fail(spec: str, name: str) -> None:
    """Offline and not cached: fail at once, as for open_clip weights (the hub client would retry
    for about a minute, logging each try)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    hub, url = getattr(cfg, "hf_hub_id", None), getattr(cfg, "url", None)
    if hub:
        names = [
            n for n in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin") if n
        ]
        if _cached(hub, names):
            return
    elif url:
        if (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file():
            return
    else:
        return  # timm says where it looks; its own error follows
    if not _online():
        where = f"hf-hub {hub}" if hub else url
        raise TkvrError(
            f"--visual {spec}: timm's pretrained weights ({where}) are not cached and there is no "
            "network; fetch them on a connected machine into the Hugging Face cache, or use "
            "--no-visual-pretrained for a random init"
        )


class TimmVisual(nn.Module):
    """--visual timm:NAME: a timm image model as the visual tower, frames [N, 3, H, W] -> pooled
    features [N, F]; `project` (trainable, a new module) maps F to the text width D when a
    text-side head needs D and F differs. Size, mean and std come from timm's data config."""

    def __init__(self, spec: str, pretrained: bool, out_dim: int | None = None):
        super().__init__()
        try:
            import timm
        except ImportError:
            raise TkvrError(f"--visual {spec} needs timm: pip install 'tkvr[timm]'") from None

        name = spec.split(":", 1)[1]
        if not timm.is_model(name):
            raise TkvrError(f"--visual {spec}: timm has no model {name!r} (see timm.list_models())")
        if pretrained:
            timm_weights_or_fail(spec, name)
        try:
            with quiet_hub():
                self.trunk = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except Exception as e:  # noqa: BLE001 - hub, network and file errors all mean 'no weights'
            raise TkvrError(
                f"--visual {spec}: cannot load timm's pretrained weights ({type(e).__name__}); put them "
                "in the Hugging Face cache, or use --no-visual-pretrained for a random init"
            ) from None
        f = self.trunk.num_features
        data = timm.data.resolve_data_config({}, model=self.trunk)
        self.preprocess_cfg = {
            "size": data["input_size"][1],
            "mean": tuple(data["mean"]),
            "std": tuple(data["std"]),
            "interpolation": data["interpolation"],
        }
        self.project = nn.Linear(f, out_dim) if out_dim and out_dim != f else None
        self.output_dim = out_dim or f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)  # [N, F]
        return self.project(f) if self.project is not None else f  # [N, D]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)


def build_model(
    backbone: Backbone,
    temporal: str,
    head: nn.Module,
    frames: int,
    temporal_layers: int = 6,
    t1d_blocks: list[int] | None = None,
    t_trans_form: str = "released",
    visual: nn.Module | None = None,
    t1d_form: str = "released",
) -> VideoModel:
    """Wrap a backbone's visual encoder (or `visual`, a TimmVisual) into a VideoModel. The text
    tower is not part of it."""
    from tkvr.temporal import build_temporal

    ctx = FrameContext()
    dim = visual.output_dim if visual is not None else backbone.dim
    visual = visual if visual is not None else backbone.clip.visual
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED + 1)
        module = build_temporal(
            temporal,
            visual,
            dim,
            frames,
            ctx,
            layers=temporal_layers,
            blocks=t1d_blocks,
            form=t_trans_form,
            t1d_form=t1d_form,
        )
    return VideoModel(visual, module, head, ctx)


def video_model(backbone: Backbone, m, head: nn.Module, visual: nn.Module | None = None) -> VideoModel:
    """build_model with a run's model settings (m: ModelConfig)."""
    return build_model(
        backbone,
        m.temporal,
        head,
        m.frames,
        m.temporal_layers,
        m.t1d_blocks,
        m.t_trans_form,
        visual,
        m.t1d_form,
    )


def build(
    cfg,
    classes: list[str],
    templates: list[str],
    weights: bool = True,
    embeddings=None,
    cosine_learned: bool = False,
):
    """(Backbone, VideoModel) for `classes` from a run's config (TrainConfig): backbone, head,
    temporal module. `weights=False` builds the architecture only (a checkpoint supplies the
    weights). `embeddings` [C, D] overrides the head's matrix."""
    from tkvr.heads import Head, PromptHead, head_matrix
    from tkvr.text import class_embeddings, load_embeddings, prompt_name

    m = cfg.model
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
                made_by = saved.get("text_encoder")
                if m.text_encoder and made_by != m.text_encoder:
                    raise TkvrError(
                        f"--text-encoder {m.text_encoder}: --embeddings {m.embeddings} was made by "
                        f"{made_by or 'CLIP'}'s text encoder; give the one that made it, or neither"
                    )
                m.text_encoder = made_by  # recorded with the run: new class names get the same encoder
            elif m.template_mode == "augment":
                bank = class_embeddings(backbone, classes, templates, m.text_encoder, per_template=True)
                embeddings = F.normalize(bank.mean(0), dim=-1)  # the average: what eval scores with
            else:
                embeddings = class_embeddings(backbone, classes, templates, m.text_encoder)
        elif m.head == "lda":  # a placeholder: the LDA fit replaces it from visual features
            embeddings = head_matrix("random", len(classes), width, cfg.optim.seed)
        else:
            embeddings = head_matrix(m.head, len(classes), width, cfg.optim.seed)
    scale, learn = logit_scale(backbone, m.logit_scale)
    if m.template_mode == "learn":  # the context starts random; a checkpoint's weights replace it
        head = PromptHead(
            backbone.clip,
            backbone.tokenizer,
            [prompt_name(c) for c in classes],
            m.prompt_length,
            cfg.optim.seed,
            scale=scale,
            learn_scale=learn,
        )
    elif m.text_online:  # the matching paradigm's online text encoder: the tower trains with the model
        head = PromptHead(
            backbone.clip,
            backbone.tokenizer,
            [prompt_name(c) for c in classes],
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
    model = video_model(backbone, m, head, visual)
    model.objective = m.objective
    if cfg.optim.grad_checkpointing:
        model.visual.set_grad_checkpointing(True)
    return backbone, model


def logit_scale(backbone: Backbone, setting: str) -> tuple[float, bool]:
    """(start value, trained?) of the cosine heads' temperature for --logit-scale: learn and fixed
    start from the model's own `logit_scale.exp()` (100 for OpenAI CLIP, about 21.7 for the toy
    CLIP), a number is used as given."""
    from tkvr.heads import LOGIT_SCALE

    if setting not in ("learn", "fixed"):
        return float(setting), False
    own = getattr(backbone.clip, "logit_scale", None)
    value = float(own.detach().float().exp()) if isinstance(own, torch.Tensor) else LOGIT_SCALE
    return value, setting == "learn"


def swap_classes(
    model: nn.Module,
    text: Backbone,
    classes: list[str],
    templates: list[str],
    text_encoder: str | None = None,
) -> nn.Module:
    """The paper's zero-shot swap: `model` gets a new frozen text head whose rows are the class
    names embedded by `text`'s text encoder (or by the text-only `text_encoder` the run used).
    Works on a Fabric-wrapped model; the head goes to the device of the one it replaces."""
    from tkvr.heads import LOGIT_SCALE, Head, PromptHead
    from tkvr.text import class_embeddings, prompt_name

    inner = unwrap(model)
    if isinstance(inner.head, PromptHead):  # the learned context goes in front of the new names
        inner.head.set_classes([prompt_name(c) for c in classes], text.tokenizer)
        return model
    device = inner.head.weight.device
    # the scale the run trained to goes with the new names (the learned head has none: 100, CLIP's)
    scale = float(inner.head.scale.detach()) if inner.head.logit_scale is not None else LOGIT_SCALE
    inner.head = Head(class_embeddings(text, classes, templates, text_encoder), "text", scale=scale).to(
        device
    )
    return model
