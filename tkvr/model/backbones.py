from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import quiet_pickle
from tkvr.base.progress import say, status
from tkvr.model.catalog import BUILTIN, CONFIG_DIR, OPENAI_NAMES, SHIPPED, cached

BUILD_SEED = 0


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
    import open_clip  # deferred: open_clip is slow to import

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
        name = OPENAI_NAMES[backbone]
        # OpenAI's weights (a tag or a saved file) were trained with QuickGELU; open_clip's other
        # tags of the same architecture (laion2b_..., datacomp_...) say themselves which they need
        other_tag = pretrained not in (None, "openai") and oc.is_pretrained_cfg(name, pretrained)
        return name, pretrained, not other_tag
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


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
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


def _tag(oc, name: str, tag: str):
    """A weight tag's open_clip entry -> (entry, hf-hub repo or "", where it comes from, the error
    when it cannot be had)."""
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
    return cfg, where, what, missing


def weights_plan(m) -> dict:
    """--dry-run (m: the model group): the weights a run would load, checked as the run checks
    them (a file there, a tag known, cached or a network to fetch it), nothing loaded or fetched."""
    plan = {"backbone": backbone_weights(m.backbone, m.pretrained)}
    if m.visual and m.visual.startswith("timm:"):
        name = m.visual.split(":", 1)[1]
        if m.visual_pretrained:
            timm_weights_or_fail(m.visual, name)  # refuses as the run would
        plan["visual"] = f"timm {name}, " + (
            "its pretrained weights" if m.visual_pretrained else "a random init"
        )
    return plan


def backbone_weights(backbone: str, pretrained: str | None) -> str:
    """What --backbone / --pretrained load (described in a line), checked without loading it."""
    if backbone.startswith("hf-hub:"):
        _resolve(backbone, pretrained)  # refuses --pretrained beside it
        repo = backbone.split(":", 1)[1]
        if cached(repo, ["open_clip_config.json"]):
            return f"{backbone}, in the Hugging Face cache"
        if not _online():
            raise TkvrError(
                f"cannot get {backbone} from the Hugging Face hub (no network or not cached); download "
                "it on a connected machine and pass the open_clip name with --pretrained PATH"
            )
        return f"{backbone}, to download from the Hugging Face hub"
    oc = _open_clip()
    name, weights, _ = _resolve(backbone, pretrained)
    if weights is None:
        return f"{name}, a random init (fixed seed)"
    if Path(weights).is_file():
        return (
            f"{name} from " + ("the shipped " if backbone in SHIPPED else "") + str(Path(weights).resolve())
        )
    if os.path.sep in weights or Path(weights).suffix != "":
        raise TkvrError(f"--pretrained {weights}: no such file")
    cfg, where, what, missing = _tag(oc, name, weights)
    if where and cached(where):
        return f"{name} {weights}, in the Hugging Face cache ({where})"
    url = cfg.get("url", "")
    if not where and url and (Path("~/.cache/clip").expanduser() / Path(url).name).is_file():
        return f"{name} {weights}, in open_clip's cache (~/.cache/clip)"
    if not _online():
        raise missing
    return f"{name} {weights}, to download from {what}"


def _fetch(oc, name: str, tag: str):
    """Download (or find in the cache) the weights for a tag; a clear error when that fails."""
    cfg, where, what, missing = _tag(oc, name, tag)
    if where and not cached(where):
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


def open_clip_models() -> list[str]:
    """The architectures open_clip has a config for (any --backbone NAME it builds)."""
    return list(_open_clip().list_models())


def model_config(backbone: str) -> dict | None:
    """open_clip's architecture config (embed_dim, vision_cfg, text_cfg) of a --backbone name, read
    without building it or touching the network; None for an hf-hub model (its config is on the hub)."""
    if backbone.startswith("hf-hub:"):
        return None
    return _open_clip().get_model_config(_resolve(backbone, "none")[0])


def input_size_of(backbone: str, visual: str | None = None) -> int | None:
    """The input size a model config names, read from the architecture's config without building
    it or touching the network (None for an hf-hub model, whose config lives on the hub, and a
    timm name timm lacks)."""
    try:
        if visual:
            from timm.models import get_pretrained_cfg  # deferred: timm is an optional extra

            cfg = get_pretrained_cfg(visual.split(":", 1)[1])
            return int(cfg.input_size[-1]) if cfg is not None else None
        size = (model_config(backbone) or {})["vision_cfg"]["image_size"]
        return int(size[0] if isinstance(size, (tuple, list)) else size)
    except Exception:  # noqa: BLE001 - unknown here: the eval transform applies the rule itself
        return None


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
        with (
            status(f"building {backbone}" + (f" with weights {weights}" if weights else "")),
            torch.random.fork_rng(devices=[]),
            quiet_pickle(),  # a raw pickle is refused below
        ):
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


def timm_weights_or_fail(spec: str, name: str) -> None:
    """Offline and not cached: fail at once, as for open_clip weights (the hub client would retry
    for about a minute, logging each try)."""
    from timm.models import get_pretrained_cfg  # deferred: timm is an optional extra (--visual timm:NAME)

    cfg = get_pretrained_cfg(name)
    hub, url = getattr(cfg, "hf_hub_id", None), getattr(cfg, "url", None)
    if hub:
        names = [
            n for n in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin") if n
        ]
        if cached(hub, names):
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
            import timm  # deferred: timm is an optional extra (--visual timm:NAME)
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
