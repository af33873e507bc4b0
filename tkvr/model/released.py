"""The authors' released models (whwu95/Text4Vis) as tkvr models: what a released file holds, the
architecture its tensors' shapes describe, and its state in tkvr's parameter names.

A released file is `torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict'})` (train.py
at 238c07f, `epoch_saving`); `model_state_dict` is the `VideoCLIP` module (modules/video_clip.py at
238c07f): `visual.*` in OpenAI CLIP's layout (ViT or ModifiedResNet; open_clip keeps the same
names), `fusion_model.*` with `sim_header: Transf` (the temporal transformer:
`frame_position_embeddings`, `transformer.resblocks.N.*`), `visual.transformer.resblocks.N.
control_point.conv.weight` with `tm: tokent1d` (clip/model.py and modules/temporal_modeling.py at
238c07f), and `logit_scale`. Keys may carry DDP's `module.` prefix (test.py at 238c07f strips it).
There is no text tower: test.py embeds the class names with the pre-trained CLIP of the same
architecture, and so does `tkvr convert`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tkvr.base.errors import TkvrError


@dataclass
class Layout:
    """What a released state holds, read from its keys and shapes."""

    kind: str  # vit | resnet
    image_size: int
    width: int
    layers: int | tuple[int, ...]  # ViT blocks, or the ResNet's blocks per stage
    embed_dim: int
    patch: int | None = None  # ViT only
    temporal: str = "tap"  # tap | t-trans | token-t1d
    fusion_layers: int = 0
    positions: int = 0  # frame positions of the temporal transformer: the most frames it reads
    t1d_blocks: list[int] = field(default_factory=list)


def released_state(obj, path: str) -> dict:
    """A loaded released file -> its model state (tensors by name, `module.` stripped); a file of
    another kind is refused in one line that says what it is."""
    import torch  # deferred: the layout checks need no torch

    if not isinstance(obj, dict):
        raise TkvrError(f"{path} is not a released Text4Vis checkpoint (it holds a {type(obj).__name__})")
    if "fusion_model_state_dict" in obj:
        raise TkvrError(
            f"{path} is an ActionCLIP checkpoint (model_state_dict with fusion_model_state_dict), not a "
            "Text4Vis one; tkvr converts the Text4Vis model zoo's files"
        )
    if "format" in obj and "config" in obj:
        raise TkvrError(f"{path} is a tkvr checkpoint already: pass it as --checkpoint")
    state = obj.get("model_state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TkvrError(
            f"{path} is not a released Text4Vis checkpoint: no 'model_state_dict' of tensors inside"
        )
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if "token_embedding.weight" in state or any(k.startswith("transformer.resblocks.") for k in state):
        raise TkvrError(
            f"{path} is a plain CLIP model (it has a text tower), not a Text4Vis video model; use it "
            "with --backbone NAME --pretrained PATH"
        )
    if not any(k.startswith("visual.") for k in state):
        raise TkvrError(f"{path} is not a released Text4Vis checkpoint: no visual.* weights inside")
    return state


def _count(state: dict, prefix: str) -> int:
    """How many numbered children `prefix.N.` the state has."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def layout(state: dict, path: str = "file") -> Layout:
    """The architecture, as OpenAI's build_model reads it from the shapes (never the file name)."""
    try:
        if "visual.conv1.weight" in state and "visual.transformer.resblocks.0.ln_1.weight" in state:
            conv = state["visual.conv1.weight"]  # [W, 3, P, P]
            grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            out = Layout(
                "vit",
                image_size=conv.shape[-1] * grid,
                width=conv.shape[0],
                layers=_count(state, "visual.transformer.resblocks"),
                embed_dim=state["visual.proj"].shape[1],
                patch=conv.shape[-1],
            )
            out.t1d_blocks = sorted(
                int(k.split(".")[3]) for k in state if k.endswith(".control_point.conv.weight")
            )
        else:
            pos = state["visual.attnpool.positional_embedding"]  # [(S/32)^2 + 1, W*32]
            out = Layout(
                "resnet",
                image_size=round((pos.shape[0] - 1) ** 0.5) * 32,
                width=state["visual.layer1.0.conv1.weight"].shape[0],
                layers=tuple(_count(state, f"visual.layer{i}") for i in range(1, 5)),
                embed_dim=state["visual.attnpool.c_proj.weight"].shape[0],
            )
    except KeyError as e:
        raise TkvrError(
            f"{path}: the visual encoder is neither a CLIP ViT nor a CLIP ResNet (no {e})"
        ) from None
    out.fusion_layers = _count(state, "fusion_model.transformer.resblocks")
    if out.fusion_layers and "fusion_model.frame_position_embeddings.weight" in state:
        out.positions = state["fusion_model.frame_position_embeddings.weight"].shape[0]  # [L, D]
    if out.fusion_layers and out.t1d_blocks:
        raise TkvrError(f"{path} has both TokenT1D and a temporal transformer; tkvr runs one temporal module")
    out.temporal = "t-trans" if out.fusion_layers else "token-t1d" if out.t1d_blocks else "tap"
    return out


def differences(vision_cfg: dict, embed_dim: int, lay: Layout) -> list[str]:
    """What of a layout's visual encoder an open_clip model config does not share: its kind, or
    image size, width, blocks, patch, embedding size ([] where it describes it)."""
    size = vision_cfg.get("image_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    layers = vision_cfg.get("layers")
    kind = "resnet" if isinstance(layers, (list, tuple)) else "vit"
    if kind != lay.kind:
        return ["kind (ViT or ResNet)"]
    pairs = {
        "image size": (size, lay.image_size),
        "width": (vision_cfg.get("width"), lay.width),
        "blocks": (tuple(layers) if kind == "resnet" else layers, lay.layers),
        "patch": (vision_cfg.get("patch_size") if kind == "vit" else None, lay.patch),
        "embed": (embed_dim, lay.embed_dim),
    }
    return [k for k, (a, b) in pairs.items() if a != b]


def matches(vision_cfg: dict, embed_dim: int, lay: Layout) -> bool:
    """Whether an open_clip model config describes the layout's visual encoder."""
    return not differences(vision_cfg, embed_dim, lay)


def describe(lay: Layout) -> str:
    if lay.kind == "vit":
        shape = f"ViT width {lay.width}, {lay.layers} blocks, patch {lay.patch}"
    else:
        shape = f"ResNet width {lay.width}, blocks {lay.layers}"
    return f"{shape}, {lay.image_size} px, embed {lay.embed_dim}"


def to_tkvr(state: dict, lay: Layout) -> dict:
    """The released state in tkvr's names: the visual encoder as is (open_clip keeps OpenAI's
    names), a TokenT1D block's weights under `block.` and its convolution as `tconv.conv`, the
    temporal transformer as `temporal.`, the logit scale as the head's."""
    out = {}
    blocks = set(lay.t1d_blocks)
    for k, v in state.items():
        if k.startswith("fusion_model."):
            out["temporal." + k[len("fusion_model.") :]] = v
        elif k == "logit_scale":
            out["head.logit_scale"] = v
        elif k.startswith("visual.transformer.resblocks.") and int(k.split(".")[3]) in blocks:
            head, rest = ".".join(k.split(".")[:4]), ".".join(k.split(".")[4:])
            if rest == "control_point.conv.weight":
                out[f"{head}.tconv.conv.weight"] = v
            else:
                out[f"{head}.block.{rest}"] = v
        else:
            out[k] = v
    return out
