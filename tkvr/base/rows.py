"""`tkvr predict --out`'s rows: appended and flushed as they are scored (CSV or JSON lines), read
back on --resume with what a kill or an edit left dropped, so the inputs it lost are scored again."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tkvr.base import table
from tkvr.base.errors import Fault, TkvrError
from tkvr.base.fileio import atomic_write_bytes
from tkvr.base.progress import count, say


class Rows:
    """--out: rows appended and flushed as they come (csv or jsonl), read back on --resume.

    A row: file, [window, windows, start, end,] labels [k], scores [k] or error. File names are
    bytes on Linux: one that is not UTF-8 is written back as the same bytes (surrogateescape), so
    the row names the file that is on disk. The file (and a CSV's header) is created with the
    first row: a run that fails before scoring anything leaves nothing to refuse a rerun."""

    def __init__(self, path: str | None, k: int, windows: bool, resume: bool):
        self.path, self.k, self.windows = Path(path) if path else None, k, windows
        self.csv = self.path is not None and self.path.suffix.lower() == ".csv"
        self.columns = ["file"] + (["window", "windows", "start", "end"] if windows else [])
        self.columns += [f"{x}_{i}" for i in range(1, k + 1) for x in ("label", "score")] + ["error"]
        self.old: dict[str, list[dict]] = {}
        self.file = None
        if self.path is not None and resume and self.path.is_file():
            self.old = self._read_back()

    def _read_back(self) -> dict[str, list[dict]]:
        """Complete inputs already in the file. A partial last line, a row that does not parse (an
        edit, a cut inside a quoted name) and a video whose windows are not all there (a kill
        while writing) are dropped, by rewriting the file atomically without them: their inputs
        are scored again."""
        text = self.path.read_bytes().decode("utf-8", errors="surrogateescape")
        whole = text[: text.rfind("\n") + 1]  # a kill mid-line leaves a partial last line
        rows, bad = [], 0
        if self.csv:
            read = table.cells(whole)
            header = next(read, None)
            if header and header != self.columns:
                raise TkvrError(
                    f"--out {self.path} has other columns ({', '.join(header[:6])}, ...): "
                    "continue it with the --top-k and --window it was written with, or give another --out"
                )
            for row in read:  # None: e.g. a cut inside a quoted name, after which nothing parses
                r = self._from_csv(row) if row is not None else None
                rows += [r] if r else []
                bad += not r
        else:
            for line in whole.splitlines():
                try:
                    r = self._checked(json.loads(line))
                except (ValueError, RecursionError):
                    r = None
                rows += [r] if r else []
                bad += not r
            if rows and ("window" in rows[0]) != self.windows:
                raise TkvrError(
                    f"--out {self.path} was written {'with' if 'window' in rows[0] else 'without'} "
                    "--window: continue it the same way, or give another --out"
                )
        by_file: dict[str, list[dict]] = {}
        for r in rows:
            by_file.setdefault(r["file"], []).append(r)
        done = {
            f: rs
            for f, rs in by_file.items()
            if "error" in rs[0] or not self.windows or len({r["window"] for r in rs}) == int(rs[0]["windows"])
        }
        if bad:
            say(f"--resume: {count(bad, 'row')} of {self.path} did not parse (cut or edited); scored again")
        if whole != text or bad or len(done) != len(by_file):
            kept = [r for rs in done.values() for r in rs]
            header = table.line(self.columns) if self.csv and kept else ""
            atomic_write_bytes(
                (header + "".join(self._line(r) for r in kept)).encode(errors="surrogateescape"), self.path
            )
        return done

    def _from_csv(self, cells: list[str]) -> dict | None:
        if len(cells) != len(self.columns):
            return None
        return self._checked(dict(zip(self.columns, cells)), text=True)

    def _checked(self, r, text: bool = False) -> dict | None:
        """A row read back, with its types checked (and, from CSV, parsed); None if it is not one
        tkvr wrote: a row that cannot be trusted is scored again, not kept."""
        try:
            if not isinstance(r, dict) or not isinstance(r.get("file"), str) or not r["file"]:
                return None
            out = {"file": r["file"]}
            if self.windows:
                out.update(
                    window=int(r["window"]),
                    windows=int(r["windows"]),
                    start=float(r["start"]),
                    end=float(r["end"]),
                )
            if r.get("error"):
                return {**out, "error": str(r["error"])}
            if self.windows and not 0 <= out["window"] < out["windows"]:
                return None
            if text:
                n = [i for i in range(1, self.k + 1) if r[f"label_{i}"] != ""]
                labels, scores = [r[f"label_{i}"] for i in n], [float(r[f"score_{i}"]) for i in n]
            else:
                labels, scores = r["labels"], [float(v) for v in r["scores"]]
            ok = (
                isinstance(labels, list)
                and 0 < len(labels) == len(scores) <= self.k
                and all(isinstance(x, str) for x in labels)
                and all(0.0 <= v <= 1.0 for v in scores)
            )
            return {**out, "labels": labels, "scores": scores} if ok else None
        except (KeyError, TypeError, ValueError):
            return None

    def _line(self, r: dict) -> str:
        if not self.csv:
            return json.dumps(r) + "\n"
        row = {"file": r["file"], "error": r.get("error", "")}
        for key in ("window", "windows", "start", "end"):
            if key in r:
                row[key] = r[key]
        for i, (lab, s) in enumerate(zip(r.get("labels", []), r.get("scores", [])), 1):
            row[f"label_{i}"], row[f"score_{i}"] = lab, s
        return table.line(row.get(c, "") for c in self.columns)

    def write(self, rows: list[dict]) -> None:
        if self.path is None or not rows:
            return
        try:
            if self.file is None:  # the first row: the file, and a CSV's header, come with it
                fresh = not self.path.is_file() or self.path.stat().st_size == 0
                self.file = open(self.path, "a", newline="", encoding="utf-8", errors="surrogateescape")
                if fresh and self.csv:
                    self.file.write(table.line(self.columns))
            self.file.write("".join(self._line(r) for r in rows))  # one write: a video's rows together
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:  # a full disk: the write names no file by itself
            raise Fault(
                f"cannot write --out {self.path}: {e.strerror or e}; the rows before are kept (a row cut "
                "short is dropped on resume): free space and rerun with --resume"
            ) from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
