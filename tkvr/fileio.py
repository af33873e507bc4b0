"""Safe reading and atomic writing of the .pt files tkvr produces.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed over
the target, so a process killed mid-write leaves the previous file intact. Every file is read
with `weights_only=True`, so a file whose pickle would run code is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from tkvr.errors import TkvrError


@contextmanager
def _atomic(path: str | os.PathLike, mode: str):
    """Open a temporary file beside `path`; on success flush it to disk and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a file renamed into place gets the usual mode
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path: str | os.PathLike) -> Path:
    with _atomic(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    with _atomic(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    with _atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    """A report as JSON, written whole or not at all (--json, report.json)."""
    import json

    return atomic_write_text(json.dumps(obj, indent=1, default=str), path)


def safe_load(path: str | os.PathLike, what: str = "file"):
    """torch.load with weights_only=True; any refusal becomes a one-line TkvrError."""
    path = Path(path)
    if not path.is_file():
        raise TkvrError(f"{what} '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TkvrError(
            f"{what} '{path}' was refused: it holds objects other than tensors and plain data "
            f"(weights-only load: {first[:160]}); only load files you trust from tkvr or torch.save"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise TkvrError(f"{what} '{path}' is not a readable torch file ({type(e).__name__}); "
                        "was it truncated or written by another program?") from None
