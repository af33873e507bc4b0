"""Dataset definitions: what `--data` names, resolved to classes and (path, label) samples per split.

`--data` takes
  - a built-in name resolved under `--data-root` / `TKVR_DATA_ROOT`: k400, k600, ucf101, hmdb51,
    imagenet (folder `<root>/<name>`), or toy (generated, see tkvr.data.toy);
  - a YAML dataset file (keys below);
  - a folder, whose layout is recognised (UCF-101 / HMDB-51 split files, Kinetics CSVs, list
    files train.txt / val.txt, or class folders with or without train/ and val/);
  - any of these followed by `@SUBSET` to keep a class subset: `k400@K300`, `ucf101@seen.txt`
    (a file of class names, one a line). `K300`, `K100`, `IN600`, `IN400` alone mean
    `k400@K300`, `k400@K100`, `imagenet@IN600`, `imagenet@IN400`.

Class subsets K300/K100 (IN600/IN400): the class ids 0..399 of Kinetics-400 (0..999 of ImageNet),
in the canonical order (torchvision's Kinetics-400 list; open_clip's ImageNet list), shuffled by
`random.Random(0).shuffle`; the first 300 (600) are seen, the rest unseen; each subset is kept in
the canonical order. Samples are relabelled 0..len(subset)-1 in that order.

YAML keys: format (list | folders | kinetics | ucf101 | hmdb51 | imagenet), root, labels,
train, val (list files, CSVs or folders), frame_template (default img_{:05d}.jpg), frame_start
(number of the first frame file, default 1), flip, templates, name, fold.
Relative paths are relative to the YAML file.
"""

from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import read_text, read_yaml
from tkvr.base.progress import count, say
from tkvr.data.classes import IMAGE_TEMPLATES, builtin_classes, check_classes, read_labels_file
from tkvr.data.toy import TEMPLATES, WORLD, ensure_world, list_files, videos, world_root
from tkvr.data.video import IMAGE_EXTS, VIDEO_EXTS

BUILTIN = ("k400", "k600", "ucf101", "hmdb51", "imagenet", "toy")
SUBSETS = {
    "K300": ("k400", 400, 300, True),
    "K100": ("k400", 400, 300, False),
    "IN600": ("imagenet", 1000, 600, True),
    "IN400": ("imagenet", 1000, 600, False),
}
SPLITS = ("train", "val")
VIDEO_TEMPLATES = ["a video of a person {}."]


@dataclass
class Sample:
    path: str
    label: int
    frames: int | None = None  # JPEG frame folders: frame count from the list file


@dataclass
class DataSource:
    name: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    missing: dict[str, list[str]] = field(default_factory=dict)  # listed but not on disk
    frame_template: str = "img_{:05d}.jpg"
    frame_start: int = 1  # number of the first frame file
    flip: bool = True  # False when classes name a direction (left/right)
    templates: list[str] = field(default_factory=lambda: list(VIDEO_TEMPLATES))
    origin: str = ""
    base_ids: list[int] | None = None  # a class subset: its classes' ids in the full dataset
    unused: list[Sample] = field(default_factory=list)  # listed, in neither split of this fold (HMDB-51's 0)

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise TkvrError(
                f"--split {name}: {self.origin or self.name} has splits {', '.join(self.splits) or '(none)'}"
            )
        samples = self.splits[name]
        if not samples:
            raise TkvrError(
                f"{self.origin or self.name}: the {name} split is empty "
                f"({len(self.missing.get(name, []))} listed files missing on disk)"
            )
        return samples

    def every(self) -> list[Sample]:
        """Every video of the dataset once: its splits and what this fold leaves unused, in that
        order (the released cross-dataset zero-shot, configs/*/*_zero_shot.yaml at 092ad0a,
        scores all 13,320 UCF-101 and 6,766 HMDB-51 videos)."""
        seen, out = set(), []
        for s in [*self.splits.values(), self.unused]:
            for x in s:
                if x.path not in seen:
                    seen.add(x.path)
                    out.append(x)
        if not out:
            raise TkvrError(f"{self.origin or self.name}: no samples")
        return out

    def subset(self, keep: list[str] | list[int], label: str) -> "DataSource":
        """Keep classes, named or by id (in `keep`'s order), and relabel them 0..len(keep)-1.
        Ids matter where names repeat: open_clip's 1000 ImageNet names hold two twice."""
        if keep and isinstance(keep[0], int):
            ids = list(keep)
        else:
            unknown = [c for c in keep if c not in self.classes]
            if unknown:
                raise TkvrError(
                    f"class subset {label}: {len(unknown)} classes are not in {self.name} "
                    f"(e.g. {unknown[:3]})"
                )
            ids = [self.classes.index(c) for c in keep]
        new = {old: i for i, old in enumerate(ids)}
        splits = {
            s: [Sample(x.path, new[x.label], x.frames) for x in xs if x.label in new]
            for s, xs in self.splits.items()
        }
        base = [self.base_ids[i] for i in ids] if self.base_ids is not None else ids
        unused = [Sample(x.path, new[x.label], x.frames) for x in self.unused if x.label in new]
        return DataSource(
            f"{self.name}@{label}",
            [self.classes[i] for i in ids],
            splits,
            self.missing,
            self.frame_template,
            self.frame_start,
            self.flip,
            self.templates,
            self.origin,
            base,
            unused,
        )

    def class_ids(self) -> list[int]:
        """What identifies a class across subsets of one dataset: its id in the full dataset."""
        return self.base_ids if self.base_ids is not None else list(range(len(self.classes)))


def subset_ids(total: int, seen: int, want_seen: bool) -> list[int]:
    ids = list(range(total))
    random.Random(0).shuffle(ids)
    return sorted(ids[:seen] if want_seen else ids[seen:])


def canonical_classes(dataset: str) -> list[str]:
    return builtin_classes("k400" if dataset == "k400" else "imagenet")


# ---------------------------------------------------------------- small readers
def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise TkvrError(f"list file {path} does not exist")
    lines = [
        (n, ln.strip())
        for n, ln in enumerate(read_text(path, "list file", names=True).splitlines(), 1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    for n, ln in lines:
        if "\0" in ln:  # no file name holds one: the file is not a list tkvr can read
            raise TkvrError(
                f"list file {path}:{n}: a NUL byte in the line; was it written by another program?"
            )
    return lines


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise TkvrError(f"labels file {path} does not exist")
    return check_classes(read_labels_file(path), f"labels file {path}")


def read_list(path: Path, root: Path, classes: list[str]) -> list[Sample]:
    """`path label` or `path num_frames label`; label an id into `classes` or a class name."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for n, line in _lines(path):
        parts = line.rsplit(None, 2)
        frames = None
        if len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
            rel, frames, label = parts[0], int(parts[1]), parts[2]
        else:
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise TkvrError(f"{path}:{n}: expected 'path label' or 'path num_frames label', got {line!r}")
            rel, label = parts
            if not label.lstrip("-").isdigit():  # a class name, which may contain spaces
                cuts = [m.start() for m in re.finditer(r"\s", line)]
                hit = next((c for c in cuts if line[c + 1 :] in index), None)
                if hit is not None:
                    rel, label = line[:hit].rstrip(), line[hit + 1 :]
        if label.lstrip("-").isdigit():
            y = int(label)
            if not 0 <= y < len(classes):
                raise TkvrError(
                    f"{path}:{n}: label id {y} is outside the labels file (ids 0..{len(classes) - 1})"
                )
        elif label in index:
            y = index[label]
        else:
            raise TkvrError(f"{path}:{n}: class {label!r} is not in the labels file")
        out.append(Sample(str(root / rel), y, frames))
    outside = sum(1 for x in out if not _inside(Path(x.path), root))
    if outside:  # allowed (list files often point into a shared video store), but said
        say(f"{path}: {outside} of {len(out)} listed files lie outside {root} (absolute or ../ paths)")
    return out


def _inside(path: Path, root: Path) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(root) + os.sep)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def read_class_folders(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Sample]]:
    """root/<class>/<file or frame folder>."""
    dirs = [p for p in _files(folder) if p.is_dir()]
    found = [d.name for d in dirs]
    if classes is None:
        classes = check_classes(found, f"class folders of {folder}") if found else found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise TkvrError(f"{folder}: class folder {extra[0]!r} is not in the labels file")
    index = {c: i for i, c in enumerate(classes)}
    samples, skipped = [], []
    for d in dirs:
        try:
            files = _files(d)
        except OSError as e:
            # Refused, not left out: a class without its samples would train a head whose class
            # is never seen, and check would call the set read.
            why = "permission denied" if isinstance(e, PermissionError) else e.strerror or type(e).__name__
            raise TkvrError(
                f"{d}: cannot list this class folder ({why}); give it read permission (chmod a+rx) "
                f"or move it out of {folder}"
            ) from None
        for f in files:
            # videos, images and JPEG frame folders; anything else (notes.txt, .json) is not a sample
            (samples if f.is_dir() or f.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS else skipped).append(f)
    if skipped:
        say(
            f"{folder}: {count(len(skipped), 'file')} that are neither videos nor images left out "
            f"(e.g. {skipped[0].relative_to(folder)})"
        )
    return classes, [Sample(str(f), index[f.parent.name]) for f in samples]


# ---------------------------------------------------------------- formats
def _kinetics(root: Path, labels: Path | None, csvs: dict[str, Path]) -> DataSource:
    rows: dict[str, list[tuple[int, dict]]] = {}
    for split, path in csvs.items():
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            need = {"label", "youtube_id", "time_start", "time_end"}
            if not need <= set(reader.fieldnames or []):
                raise TkvrError(f"{path}: a Kinetics CSV needs the columns {', '.join(sorted(need))}")
            rows[split] = [(n, r) for n, r in enumerate(reader, 2)]
    if labels:
        classes = read_labels(labels)
    else:
        classes = sorted({r["label"] for n, r in rows.get("train", next(iter(rows.values())))})
    index = {c: i for i, c in enumerate(classes)}
    splits, missing = {}, {}
    for split, items in rows.items():
        files = {}
        for sub in {"train": ("train",), "val": ("val", "validate", "valid")}[split]:
            if (root / sub).is_dir():
                for dirpath, _, names in os.walk(root / sub):
                    for name in names:
                        files.setdefault(os.path.splitext(name)[0], os.path.join(dirpath, name))
        samples, miss = [], []
        for n, r in items:
            if r["label"] not in index:
                raise TkvrError(f"{csvs[split]}:{n}: class {r['label']!r} is not in the labels")
            stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            if stem in files:
                samples.append(Sample(files[stem], index[r["label"]]))
            else:
                miss.append(stem)
        splits[split], missing[split] = samples, miss
    return DataSource(root.name, classes, splits, missing, origin=str(root))


def _find_csvs(root: Path) -> dict[str, Path]:
    found = {}
    for base in (root, root / "annotations"):
        for split, names in (("train", ("train.csv",)), ("val", ("validate.csv", "val.csv"))):
            for name in names:
                if split not in found and (base / name).is_file():
                    found[split] = base / name
    return found


def _ucf101(root: Path, fold: int) -> DataSource:
    lists = next((d for d in (root / "ucfTrainTestlist", root) if (d / "classInd.txt").is_file()), None)
    if lists is None:
        raise TkvrError(f"{root}: UCF-101 needs ucfTrainTestlist/classInd.txt")
    classes = []
    for n, line in _lines(lists / "classInd.txt"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise TkvrError(f"{lists / 'classInd.txt'}:{n}: expected '<id> <ClassName>' with ids 1, 2, ...")
        classes.append(parts[1])
    videos = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, name in (("train", f"trainlist{fold:02d}.txt"), ("val", f"testlist{fold:02d}.txt")):
        samples = []
        for n, line in _lines(lists / name):
            rel = line.split()[0]
            cls = rel.split("/")[0]
            if cls not in index:
                raise TkvrError(f"{lists / name}:{n}: class {cls!r} is not in classInd.txt")
            samples.append(Sample(str(videos / rel), index[cls]))
        splits[split] = samples
    return DataSource("ucf101", classes, splits, origin=str(root))


def _hmdb51(root: Path, fold: int) -> DataSource:
    dirs = [root / "testTrainMulti_7030_splits", root / "splits", root]
    lists = next((d for d in dirs if d.is_dir() and list(d.glob(f"*_test_split{fold}.txt"))), None)
    if lists is None:
        raise TkvrError(
            f"{root}: HMDB-51 needs <class>_test_split{fold}.txt files (in testTrainMulti_7030_splits/)"
        )
    files = sorted(lists.glob(f"*_test_split{fold}.txt"))
    classes = [f.name[: -len(f"_test_split{fold}.txt")] for f in files]
    videos = root / "videos" if (root / "videos").is_dir() else root
    splits, unused = {"train": [], "val": []}, []
    for y, f in enumerate(files):
        for n, line in _lines(f):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise TkvrError(f"{f}:{n}: expected '<file> 0|1|2'")
            sample = Sample(str(videos / classes[y] / parts[0]), y)
            (unused if parts[1] == "0" else splits["train" if parts[1] == "1" else "val"]).append(sample)
    return DataSource("hmdb51", classes, splits, origin=str(root), unused=unused)


def _image_folders(root: Path) -> DataSource:
    """ImageNet layout: root/{train,val}/<wnid or class>/<image>."""
    from open_clip.zero_shot_metadata import (
        IMAGENET_CLASSNAMES,  # deferred: open_clip is slow to import
    )

    if not (root / "train").is_dir():
        raise TkvrError(f"{root}: an image dataset needs train/<class>/ folders")
    wnids = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    splits = {}
    for split in SPLITS:
        if (root / split).is_dir():
            _, splits[split] = read_class_folders(root / split, wnids)
    names, templates = wnids, ["a photo of a {}."]
    if len(wnids) == 1000 and all(re.fullmatch(r"n\d{8}", w) for w in wnids):
        from open_clip.zero_shot_metadata import (
            OPENAI_IMAGENET_TEMPLATES,  # deferred: open_clip is slow to import
        )

        names = list(IMAGENET_CLASSNAMES)  # in sorted-wnid order, the standard class index
        templates = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]  # CLIP's 80 ImageNet prompts
    return DataSource(root.name, names, splits, origin=str(root), templates=templates)


def _folder(root: Path, fold: int, labels: Path | None = None) -> DataSource:
    if (root / "dataset.yaml").is_file():  # a dataset file in the folder says it all (tkvr prepare)
        return _yaml(root / "dataset.yaml", fold)
    src = _layout(root, fold, labels)
    first = next((xs[0] for xs in src.splits.values() if xs), None)
    if (
        first is not None
        and src.templates == VIDEO_TEMPLATES
        and Path(first.path).suffix.lower() in IMAGE_EXTS
    ):
        src.templates = list(IMAGE_TEMPLATES)  # photos, not videos of a person
    return src


def _layout(root: Path, fold: int, labels: Path | None = None) -> DataSource:
    if (root / "ucfTrainTestlist").is_dir() or (root / "classInd.txt").is_file():
        return _ucf101(root, fold)
    if (root / "testTrainMulti_7030_splits").is_dir() or list(root.glob("*_test_split1.txt")):
        return _hmdb51(root, fold)
    csvs = _find_csvs(root)
    if csvs:
        return _kinetics(root, labels or next((p for p in (root / "labels.txt",) if p.is_file()), None), csvs)
    lists = {s: root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()}
    if lists:
        labels = labels or next(
            (root / n for n in ("labels.csv", "labels.txt", "classes.txt") if (root / n).is_file()), None
        )
        if labels is None:
            raise TkvrError(f"{root}: list files need a labels file (labels.csv with id,name or labels.txt)")
        classes = read_labels(labels)
        return DataSource(
            root.name, classes, {s: read_list(p, root, classes) for s, p in lists.items()}, origin=str(root)
        )
    if (root / "train").is_dir():
        classes = read_labels(labels) if labels else None
        classes, train = read_class_folders(root / "train", classes)
        splits = {"train": train}
        if (root / "val").is_dir():
            splits["val"] = read_class_folders(root / "val", classes)[1]
        return DataSource(root.name, classes, splits, origin=str(root))
    classes, samples = read_class_folders(root, read_labels(labels) if labels else None)
    if not samples:
        raise TkvrError.on("--data", f"{root}: no dataset layout recognised (see docs/data.md)")
    # One folder of classes, no split: it serves as both (for check, predict, zero-shot eval).
    say(f"{root}: no train/ and val/ folders: the same samples serve as training and validation data")
    return DataSource(root.name, classes, {"train": samples, "val": samples}, origin=str(root))


def _yaml(path: Path, fold: int) -> DataSource:
    cfg = read_yaml(path, "dataset file")
    known = {
        "format",
        "root",
        "labels",
        "train",
        "val",
        "frame_template",
        "frame_start",
        "flip",
        "templates",
        "name",
        "fold",
    }
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise TkvrError(f"{path}: unknown key {unknown[0]!r}; keys are {', '.join(sorted(known))}")
    base = path.parent

    def rel(key):
        return (base / cfg[key]) if cfg.get(key) else None

    root = rel("root") or base
    fold = int(cfg.get("fold", fold))
    fmt = cfg.get("format", "list")
    labels = rel("labels")
    if fmt == "list":
        if labels is None:
            raise TkvrError(f"{path}: format 'list' needs 'labels'")
        classes = read_labels(labels)
        splits = {s: read_list(rel(s), root, classes) for s in SPLITS if cfg.get(s)}
        src = DataSource(cfg.get("name", path.stem), classes, splits, origin=str(path))
    elif fmt == "folders":
        classes = read_labels(labels) if labels else None
        splits = {}
        for s in SPLITS:
            if cfg.get(s):
                classes, splits[s] = read_class_folders(rel(s), classes)
        src = DataSource(cfg.get("name", path.stem), classes or [], splits, origin=str(path))
    elif fmt == "kinetics":
        csvs = {s: rel(s) for s in SPLITS if cfg.get(s)} or _find_csvs(root)
        src = _kinetics(root, labels, csvs)
    elif fmt == "ucf101":
        src = _ucf101(root, fold)
    elif fmt == "hmdb51":
        src = _hmdb51(root, fold)
    elif fmt == "imagenet":
        src = _image_folders(root)
    else:
        raise TkvrError(
            f"{path}: format {fmt!r} is not known: list, folders, kinetics, ucf101, hmdb51, imagenet"
        )
    src.origin = str(path)
    if "frame_template" in cfg:
        src.frame_template = cfg["frame_template"]
    if "frame_start" in cfg:
        src.frame_start = int(cfg["frame_start"])
    if "flip" in cfg:
        src.flip = bool(cfg["flip"])
    if cfg.get("templates"):
        src.templates = list(cfg["templates"])
    return src


def data_root(flag: str | None) -> Path | None:
    value = flag or os.environ.get("TKVR_DATA_ROOT")
    return Path(value).expanduser() if value else None


def absolute(spec: str) -> str:
    """--data with its paths made absolute (a folder, a YAML file, an @subset file), so a
    checkpoint's data resolves from any working directory; names stay names."""

    def fix(part: str) -> str:
        return os.path.abspath(part) if part and Path(part).expanduser().exists() else part

    if Path(spec).exists() or "@" not in spec:
        return fix(spec)
    base, _, subset = spec.partition("@")
    return f"{fix(base)}@{fix(subset)}"


def resolve(spec: str, root: str | None = None, fold: int = 1, write: bool = True) -> DataSource:
    """--data SPEC[@SUBSET] -> DataSource. write=False (--dry-run): nothing is written; the toy
    world, when not generated yet, is described from its lists (its videos named, not made)."""
    if spec in SUBSETS:
        spec = f"{SUBSETS[spec][0]}@{spec}"
    base, _, subset = spec.partition("@") if "@" in spec and not Path(spec).exists() else (spec, "", "")
    if base == "toy" and not write and not (world_root() / "world.json").is_file():
        return _unwritten_toy(subset)
    src = _resolve_base(base, root, fold)
    if subset:
        if subset in SUBSETS:
            dataset, total, seen, want_seen = SUBSETS[subset]
            ids = subset_ids(total, seen, want_seen)
            canon = canonical_classes(dataset)
            # the dataset in the canonical order: take ids; otherwise match the canonical names
            keep = ids if src.classes == canon else [canon[i] for i in ids]
        else:
            own = Path(src.origin) / f"{subset}.txt"  # a subset the dataset ships: toy@unseen
            keep = read_labels(own if not Path(subset).is_file() and own.is_file() else Path(subset))
        src = src.subset(keep, subset)
    return src


def _unwritten_toy(subset: str) -> DataSource:
    """The toy world before it is written: its classes, splits and subsets from its list files'
    text, the videos at the paths the first real run writes them to."""
    root, world = world_root(), {**WORLD}
    lists = list_files(world)
    n = sum(map(len, videos(world).values()))
    say(f"# toy world: not written yet; a run writes {n} videos to {root}")  # a YAML comment: the plan
    classes = [ln.split(",", 1)[1] for ln in lists["labels.csv"].splitlines()[1:]]
    splits = {split: [Sample(str(root / rel), y) for rel, y in rows] for split, rows in videos(world).items()}
    src = DataSource("toy", classes, splits, flip=False, templates=list(TEMPLATES), origin=str(root))
    if subset:
        own = f"{subset}.txt"
        if Path(subset).is_file():
            keep = read_labels(Path(subset))
        elif own in lists:
            keep = lists[own].splitlines()
        else:
            raise TkvrError.on("--data", f"toy@{subset}: the toy world has the subsets seen and unseen")
        src = src.subset(keep, subset)
    return src


def _resolve_base(spec: str, root: str | None, fold: int) -> DataSource:
    path = Path(spec).expanduser()
    if spec == "toy":
        src = _folder(ensure_world(), fold=1)
        src.name, src.flip, src.templates = "toy", False, list(TEMPLATES)  # classes name directions: no flips
        return src
    if spec in BUILTIN:
        base = data_root(root)
        if base is None:
            raise TkvrError.on(
                "--data", f"{spec}: set --data-root or TKVR_DATA_ROOT to the folder that holds {spec}/"
            )
        folder = base / spec
        if not folder.is_dir():
            raise TkvrError.on("--data", f"{spec}: {folder} does not exist (data root {base})")
        return _image_folders(folder) if spec == "imagenet" else _folder(folder, fold)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _yaml(path, fold)
    if path.is_dir():
        return _folder(path, fold)
    raise TkvrError.on(
        "--data", f"{spec}: not a built-in name ({', '.join(BUILTIN)}), a YAML file or a folder"
    )
