"""The CSV tables tkvr writes and reads back: a run's metrics.csv and steps.csv, predict's rows
and segments, eval's per-class table. One way to write a row (`line`: comma-separated, quoted
where needed, a "\\n" line end) and a table (`text`), one to read a table a user may have edited or
a kill may have cut (`read_table`), and the rows of a file read tolerantly (`cells`)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import finite, read_text


def line(cells: Iterable) -> str:
    """One row: its cells as CSV, ending in a line end."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(cells))
    return buf.getvalue()


def text(columns: list[str], rows: Iterable[dict]) -> str:
    """A whole table: the header, then each row's cells by column (a missing cell is empty)."""
    return line(columns) + "".join(line(r.get(c, "") for c in columns) for r in rows)


def cells(whole: str) -> Iterator[list[str] | None]:
    """The rows of CSV text as lists of cells; None once, and nothing after it, where the text
    stops parsing (a cut inside a quoted name: what follows cannot be trusted)."""
    reader = csv.reader(io.StringIO(whole, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None
            return
        yield row


def read_table(path: str | os.PathLike, what: str, numbers: dict[str, type]) -> list[dict]:
    """A CSV file with a header row; the columns in `numbers` are parsed (int or float) where
    filled. A last row cut short (a process killed mid-append: too few fields, or no line end) is
    dropped; any other bad row is an error naming its line."""

    text = read_text(path, what)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
        header = reader.fieldnames or []
    except csv.Error as e:
        raise TkvrError(f"{what} {path} is not a CSV table ({e})") from None
    missing = [c for c in numbers if c not in header]
    if missing:
        raise TkvrError(
            f"{what} {path}: no column {missing[0]!r} (header: {', '.join(map(str, header)) or 'none'})"
        )
    if rows and not text.endswith("\n"):  # a row is whole when its line ends: this one was cut
        rows.pop()
    out = []
    for n, row in enumerate(rows, 2):
        if None in row.values() or None in row:  # too few or too many fields
            if n == len(rows) + 1:
                break
            raise TkvrError(f"{what} {path}:{n}: {len(header)} fields expected")
        parsed = dict(row)
        for col, kind in numbers.items():
            value = row[col]
            if value in ("", None):
                continue
            try:  # NaN and inf are refused as any non-number: tkvr writes none (a run stops first)
                parsed[col] = finite(value) if kind is float else kind(value)
            except ValueError:
                raise TkvrError(f"{what} {path}:{n}: {col} {value!r} is not a finite number") from None
        out.append(parsed)
    return out
