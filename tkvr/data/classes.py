"""Class lists and prompt templates: built-in lists (k400, imagenet), labels files, the checks every
class list passes (no duplicates, no names that read alike), and the templates datasets bring.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import read_text

DEFAULT_TEMPLATES = ("a video of a person {}.",)
IMAGE_TEMPLATES = ("a photo of a {}.",)
# --template-mode augment without --template: the 28 Kinetics templates the authors list in their
# released modules/text_prompt.py at 238c07f (7 phrasings x 4 openings).
TEXT4VIS_TEMPLATES = tuple(
    f"{opening} {middle}{{}}."
    for opening in ("a photo of", "a video of", "a example of", "a demonstration of")
    for middle in (
        "",
        "a person ",
        "a person using ",
        "a person doing ",
        "a person during ",
        "a person performing ",
        "a person practicing ",
    )
)


def builtin_classes(name: str) -> list[str] | None:
    key = name.lower().replace("-", "").replace("_", "")
    if key in ("k400", "kinetics400", "kinetics"):
        from torchvision.models._meta import (
            _KINETICS400_CATEGORIES,  # deferred: only this path needs torchvision
        )

        return list(_KINETICS400_CATEGORIES)
    if key in ("imagenet", "imagenet1k", "in1k"):
        from open_clip.zero_shot_metadata import (
            IMAGENET_CLASSNAMES,  # deferred: open_clip is slow to import
        )

        return list(IMAGENET_CLASSNAMES)
    return None


BUILTIN_LISTS = ("k400", "imagenet")


CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # NUL, tabs, escapes: no class name holds one


def read_labels_file(path: Path) -> list[str]:
    """One class name a line, or CSV `id,name` (a header line `id,name` is skipped)."""
    lines = [ln.strip() for ln in read_text(path, "labels file").splitlines()]
    for n, ln in enumerate(lines, 1):
        if CONTROL.search(ln):
            raise TkvrError(
                f"labels file {path}:{n}: holds a control character ({CONTROL.search(ln).group()!r}); "
                "class names are plain text"
            )
    lines = [ln for ln in lines if ln]
    if not lines:
        return []
    if lines[0].replace(" ", "").lower() in ("id,name", "label,name"):
        lines = lines[1:]
    # CSV as CSV: `3,"push, pull"` is id 3, a name with a comma; a lone quoted name loses its quotes
    rows = [next(csv.reader([ln], skipinitialspace=True)) for ln in lines]
    if rows and all(len(r) == 2 and r[0].strip().isdigit() for r in rows):
        ids = [int(r[0]) for r in rows]
        if sorted(ids) != list(range(min(ids), min(ids) + len(ids))):
            raise TkvrError(f"labels file {path}: ids must run without gaps, got {ids[:8]}...")
        order = sorted(range(len(rows)), key=lambda i: ids[i])
        return [rows[i][1].strip() for i in order]
    return [r[0].strip() if len(r) == 1 and ln.startswith('"') else ln for r, ln in zip(rows, lines)]


def prompt_name(name: str, style: str = "words") -> str:
    """How a class id reads in a prompt (--class-names). words: 'ApplyEyeMakeup' -> 'Apply Eye
    Makeup', 'brush_hair' -> 'brush hair'; names that already contain spaces are kept as they are.
    released: as the released label lists spell them (whwu95/Text4Vis lists/*_labels.csv at
    092ad0a): underscores become spaces, joined words stay joined ('ApplyEyeMakeup')."""
    if style == "released":
        return name.replace("_", " ")
    if " " in name:
        return name
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.replace("_", " "))


def check_classes(classes: list[str], source: str) -> list[str]:
    if not classes:
        raise TkvrError(f"{source}: the class list is empty")
    seen: dict[str, int] = {}
    for i, c in enumerate(classes):
        if CONTROL.search(c):
            raise TkvrError(
                f"{source}: class name {c!r} holds a control character; class names are plain text"
            )
        if c in seen:
            raise TkvrError(
                f"{source}: class name {c!r} appears twice (entries {seen[c] + 1} and {i + 1}); "
                "class names must be unique"
            )
        seen[c] = i
    readable: dict[str, str] = {}
    for c in classes:  # CLIP's tokenizer lowercases: 'brush_hair' and 'Brush Hair' embed alike
        key = " ".join(prompt_name(c).lower().split())
        if key in readable:
            raise TkvrError(
                f"{source}: classes {readable[key]!r} and {c!r} both read {key!r}, so their text "
                "embeddings are identical; merge them or rename one"
            )
        readable[key] = c
    return classes


def resolve_classes(spec: str, flag: str = "--classes") -> list[str]:
    """A labels file, a built-in list name, or a comma-separated list."""
    path = Path(spec)
    try:
        is_file = path.is_file()
    except OSError:  # a long comma list is a name too long for the file system, not a file
        is_file = False
    if is_file:
        return check_classes(read_labels_file(path), f"{flag} {spec}")
    if "," in spec:  # as CSV: '"push, pull",x' is two names, as in a labels file
        names = next(csv.reader([spec], skipinitialspace=True))
        return check_classes([c.strip() for c in names if c.strip()], f"{flag} {spec!r}")
    found = builtin_classes(spec)
    if found is not None:
        return found
    if not spec.strip():
        raise TkvrError(f"{flag}: the class list is empty")
    raise TkvrError(
        f"{flag} {spec!r}: no such labels file, and not a built-in list "
        f'({", ".join(BUILTIN_LISTS)}); for names write them comma-separated: "a,b,c"'
    )
