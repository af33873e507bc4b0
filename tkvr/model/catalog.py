"""The --backbone names tkvr takes and their --pretrained tags, read without importing torch or
open_clip (`tkvr backbones` answers in about a second; importing open_clip alone takes seconds).

open_clip's own tables are read from its installed files: the architecture configs
(`model_configs/*.json`, what `open_clip.list_models()` lists) and `pretrained.py` (the tags), which
imports neither torch nor the rest of open_clip. When a future open_clip moves them, the listing
falls back to importing open_clip.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

# The names of OpenAI's CLIP release (Text4Vis's backbones) -> open_clip's architecture names.
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
SHIPPED = {"toy": Path(__file__).parent.parent / "assets" / "toy_clip.pt"}  # built-ins with weights
CONFIG_DIR = Path(__file__).parent.parent / "configs"
PRIVATE = "tkvr._open_clip_tables"  # open_clip's pretrained.py loaded under this name, not open_clip


def cached(hub: str, names: list[str] | None = None) -> bool:
    """Whether open_clip's file (or one of `names`) for an hf-hub entry ('org/repo' or
    'org/repo/file') is in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache  # deferred: a few hundred ms

    repo, _, file = hub.partition("/")[2].partition("/")
    repo = hub.split("/")[0] + "/" + repo
    names = [file] if file else names or ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _natural(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


def _tables():
    """-> (architecture names, pretrained module): open_clip's, read from its files; or open_clip
    itself (imported) where its files are not laid out as expected."""
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    folder = Path(list(spec.submodule_search_locations or [""])[0])
    try:
        if PRIVATE not in sys.modules:
            package = types.ModuleType(PRIVATE)
            package.__path__ = [str(folder)]  # its modules load from open_clip's folder
            sys.modules[PRIVATE] = package
        # its `import safetensors.torch` (for downloads, not the tables) would load torch: the
        # private copy is loaded without it
        blocked = "safetensors.torch" not in sys.modules
        if blocked:
            sys.modules["safetensors.torch"] = None  # an ImportError, which pretrained.py expects
        try:
            pretrained = importlib.import_module(PRIVATE + ".pretrained")
        finally:
            if blocked:
                del sys.modules["safetensors.torch"]
        pretrained.list_pretrained, pretrained.get_pretrained_cfg  # noqa: B018 - both must exist
        names = []
        for f in [*(folder / "model_configs").glob("*.json"), *CONFIG_DIR.glob("*.json")]:
            cfg = json.loads(f.read_text())
            if all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
                names.append(f.stem)
        if not names:
            raise ImportError("no model_configs")
        return sorted(names, key=_natural), pretrained
    except Exception:  # noqa: BLE001 - any layout change: ask open_clip itself (slower, same answer)
        import open_clip  # deferred: seconds to import

        open_clip.add_model_config(CONFIG_DIR)
        return open_clip.list_models(), open_clip


def available() -> list[dict]:
    """Every --backbone tkvr takes by name, each name once (`tkvr backbones`): the built-ins, the
    OpenAI names (with every tag of their open_clip architecture; `also` names the architecture
    where it is spelled otherwise), then the other open_clip models. `cached`: the tags whose
    weights are in the local Hugging Face cache (usable offline)."""
    models, oc = _tables()
    tags: dict[str, list[str]] = {}
    for model, tag in oc.list_pretrained():
        tags.setdefault(model, []).append(tag)

    def cached_tags(model: str, names: list[str]) -> list[str]:
        hubs = [(t, (oc.get_pretrained_cfg(model, t) or {}).get("hf_hub")) for t in names]
        return [t for t, hub in hubs if hub and cached(hub)]

    rows = [
        {
            "backbone": b,
            "pretrained": ["shipped" if b in SHIPPED else "none (random, fixed seed)"],
            "cached": [],
            "kind": "built-in",
        }
        for b in BUILTIN
    ]
    for b, model in OPENAI_NAMES.items():
        names = ["openai", *(t for t in tags.get(model, []) if t != "openai")]
        row = {"backbone": b, "pretrained": names, "cached": cached_tags(model, names), "kind": "OpenAI CLIP"}
        if model != b:
            row["also"] = model
        rows.append(row)
    for model in models:
        if model in BUILTIN.values() or model in OPENAI_NAMES.values():
            continue
        names = tags.get(model, [])
        rows.append(
            {
                "backbone": model,
                "pretrained": names or ["none"],
                "cached": cached_tags(model, names),
                "kind": "open_clip",
            }
        )
    return rows
