"""The names every layer may import: choice registries and small parsers. Plain Python, no torch.

The CLI validates and shows these choices without importing a model or a decoder.
"""

from __future__ import annotations

import re

from tkvr.base.errors import TkvrError

# Registries' names, kept here so the CLI can validate and show them without importing torch.
TEMPORAL = ("tap", "t1d", "token-t1d", "t-trans")
HEADS = ("text", "random", "orthogonal", "lda", "learned")
DECODERS = ("auto", "torchcodec", "pyav")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "fsdp")
CROPS = ("rrc", "multiscale")
TTRANS_FORMS = ("released", "near-tap", "clip")
T1D_FORMS = ("released", "identity")
RANDAUG = ("auto", "off", "frame", "clip")
DECAY = ("all", "matrices")
VIEW_AVERAGE = ("features", "scores")
SHOT_SCHEDULES = ("released", "paper")
CLASS_NAMES = ("words", "released")
EVAL_SETS = ("auto", "all", "val")
TEMPLATE_MODES = ("average", "augment", "learn")
OBJECTIVES = ("recognition", "matching")
SCHEDULES = ("cosine", "step", "constant")
FIGURES = ("correlation", "fractions", "loss")  # tkvr plot
SUFFIXES = (".png", ".svg", ".pdf")
SPLITS = ("train", "val")


ALL_SHOTS = 0  # K = "all": the full training split, the fully supervised row of Table 8


def parse_shots(text: str) -> list[int]:
    """'1,3,5,all' -> [1, 3, 5, ALL_SHOTS]."""
    words = [x.strip().lower() for x in str(text).split(",") if x.strip()]
    try:
        numbers = [int(x) for x in words if x != "all"]
    except ValueError:
        raise TkvrError(
            f"--shots {text!r} must be a comma list of integers or 'all', e.g. 1,3,5,all"
        ) from None
    if not words or any(k < 1 for k in numbers):
        raise TkvrError(f"--shots {text!r}: every K must be >= 1 (or 'all')")
    twice = sorted({w for w in words if words.count(w) > 1 or (w != "all" and numbers.count(int(w)) > 1)})
    if twice:  # each K is one run folder: a second would meet the first's
        raise TkvrError(f"--shots {text!r}: K {twice[0]} appears twice; give each K once")
    return [ALL_SHOTS if x == "all" else int(x) for x in words]


MAX_CLIPS = 32  # temporal clips per video; published protocols use up to 10 (4x3 in the paper)


def parse_views(spec: str) -> tuple[int, int]:
    """'4x3' -> (4 temporal clips, 3 spatial crops). S must be 1 or 3."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not m:
        raise TkvrError(f"--views {spec!r} must look like CxS, e.g. 1x1 or 4x3")
    c, s = int(m.group(1)), int(m.group(2))
    if not 1 <= c <= MAX_CLIPS:  # each clip is decoded and embedded: 100000 would exhaust memory
        raise TkvrError(f"--views {spec}: the number of temporal clips C must be 1 to {MAX_CLIPS}")
    if s not in (1, 3):
        raise TkvrError(f"--views {spec}: the number of spatial crops S must be 1 or 3")
    return c, s
