"""A run's logs: metrics.csv (a row per epoch) and steps.csv (a row per --log-every steps), written
a row at a time and read back as user input; report.json's versions and writer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning_fabric
import torch

from tkvr import __version__
from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_write_text, finite
from tkvr.base.table import line, read_table
from tkvr.base.table import text as table


class CsvLog:
    """A CSV log, a row at a time. Resuming keeps the rows up to the checkpoint (`upto`: the last
    step, or epoch, it holds) and drops the rest, which the resumed run writes again. The rows
    kept are read as any file a user gives is (base/table.read_table): a bad value is one line naming
    the file and line, a row cut by a kill is dropped."""

    def __init__(self, path: Path, columns: list[str], key: str, upto: int | None):
        self.path, self.columns = path, columns
        rows = read_log(path, columns) if upto is not None and path.is_file() else []
        rows = [r for r in rows if r[key] <= upto]
        atomic_write_text(table(columns, ({c: _text(r.get(c)) for c in columns} for r in rows)), path)
        self.last = rows[-1] if rows else {}  # where a resumed run's clocks continue from

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            f.write(line(_fmt(row.get(c, "")) for c in self.columns))


def read_log(path: Path, columns: list[str]) -> list[dict]:
    """A run's metrics.csv or steps.csv: epoch and step whole numbers, the rest numbers."""
    kinds = {c: int if c in ("epoch", "step", "template") else finite for c in columns}
    rows = read_table(
        path, f"the run's {path.name}", {c: k for c, k in kinds.items() if c in ("epoch", "step")}
    )
    for n, r in enumerate(rows, 2):
        for c, kind in kinds.items():
            v = r.get(c)
            if v in ("", None) or not isinstance(v, str):
                continue
            try:
                r[c] = kind(v)
            except ValueError:  # NaN and inf too: tkvr writes none (a run stops first)
                raise TkvrError(
                    f"the run's {path.name} {path}:{n}: {c} {v!r} is not a finite number"
                ) from None
        if r.get("epoch") in ("", None) or r.get("step") in ("", None):
            raise TkvrError(f"the run's {path.name} {path}:{n}: no epoch or step")
    return rows


def _text(v) -> str:
    return "" if v is None else _fmt(v) if isinstance(v, float) else str(v)


def history(path: Path) -> list[dict]:
    """metrics.csv as rows of numbers: the whole run's history, resumes included."""
    if not path.is_file():
        return []
    return [{k: v for k, v in r.items() if v not in ("", None)} for r in read_log(path, EPOCH_COLUMNS)]


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def versions() -> dict:
    import open_clip  # deferred: open_clip is slow to import
    import torchvision  # deferred: only this path needs torchvision

    return {
        "tkvr": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "open_clip": open_clip.__version__,
        "lightning_fabric": lightning_fabric.__version__,
        "python": sys.version.split()[0],
    }


EPOCH_COLUMNS = [
    "epoch",
    "step",
    "train_loss",
    "val_top1",
    "val_top5",
    "val_mean_class",
    "lr",
    "clips_per_s",
    "wall_s",
]
# wall_s and data_wait_s count from the start of the run's fit (a resumed run goes on from the last
# row it keeps): the time the loop waited for batches, against the time it ran, between two rows is
# the loader's share (benchmarks/e2e.py).
# template: the index (into the run's templates) this step trained against, --template-mode augment
STEP_COLUMNS = ["epoch", "step", "loss", "lr", "clips_per_s", "wall_s", "data_wait_s", "template"]


def write_report(path: Path, payload: dict, command: str = "") -> None:
    atomic_write_text(
        json.dumps({"command": command, "versions": versions(), **payload}, indent=1, default=str), path
    )
