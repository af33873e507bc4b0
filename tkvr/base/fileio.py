"""Safe reading and atomic writing of the .pt files tkvr produces.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed over
the target, so a process killed mid-write leaves the previous file intact. Every file is read
with `weights_only=True`, so a file whose pickle would run code is refused, never executed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from tkvr.base.errors import TkvrError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """A temporary name beside `path` for a writer that wants a path (an exporter, a library's
    save); renamed over `path` when the block ends without an error (unless the block moved it
    itself: export puts the model in place before its sidecar), removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a file renamed into place gets the usual mode
    try:
        yield tmp
        if os.path.exists(tmp):
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


LOCK = ".tkvr.lock"  # in a run folder or prepared dataset; beside an --out file: .NAME.lock


def lock_for(path: str | os.PathLike, folder: bool) -> Path:
    """The lock file of an output: inside a folder, beside a file (never the file itself)."""
    p = Path(path)
    return p / LOCK if folder else p.with_name(f".{p.name}.lock")


@contextmanager
def hold(path: str | os.PathLike, flag: str, command: str, folder: bool = False):
    """Hold the output `path` (a run folder, a dataset folder, an --out file) while the block
    runs: a second tkvr writing it is refused in one line naming the first's pid and command.
    The lock is the kernel's (flock): it goes with the process, so a killed run holds nothing.
    The lock file is removed on release; a process that locked a file just removed tries again."""
    where = lock_for(path, folder)
    where.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(where, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, _, other = f.read().strip().partition(" ")
            f.close()
            raise TkvrError(
                f"{flag} {path} is in use by another {other or 'tkvr'} (pid {pid or '?'}); wait for it to "
                f"finish, or choose another {flag}"
            ) from None
        except OSError as e:  # a filesystem without locks (some NFS mounts): say so, go on
            sys.stderr.write(
                f"tkvr: warning: cannot lock {path} ({e.strerror or e}); run one tkvr on it at a time\n"
            )
            f.close()
            yield
            return
        try:
            same = os.stat(where).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # its holder removed it as we opened it: lock the new one
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} tkvr {command}")
        f.flush()
        sweep(path, folder)
        yield
    finally:
        try:
            os.unlink(where)
        except OSError:
            pass
        f.close()


TEMP = r"\.[a-z0-9_]{8}\.[A-Za-z0-9]+"  # what mkstemp adds in atomic_path: .XXXXXXXX.SUFFIX


def sweep(path: str | os.PathLike, folder: bool) -> None:
    """Remove the temporary files a killed writer of `path` left (atomic_path's names, which a
    kill -9 gives no chance to remove, and a checkpoint's .NAME.tmp). Called with the lock held, so
    none is being written: in a folder, in it and its subfolders (checkpoints/, videos/); beside a
    file, its own and its .json sidecar's."""
    p = Path(path)
    try:
        if folder:
            pattern = re.compile(r"\..+(" + TEMP + r"|\.pt\.tmp)")  # .pt.tmp: save_checkpoint's
            found = [f for d in [p, *p.iterdir()] if d.is_dir() for f in d.iterdir()]  # 2 levels
        else:
            pattern = re.compile(r"\." + re.escape(p.name) + r"(\.json)?" + TEMP)
            found = list(p.parent.iterdir())
        for f in found:
            if pattern.fullmatch(f.name):
                f.unlink()
    except OSError:  # a folder that cannot be listed, a file gone: nothing to sweep there
        pass


@contextmanager
def _atomic(path: str | os.PathLike, mode: str):
    """Open a temporary file beside `path`; on success flush it to disk and rename it over `path`."""
    # text: UTF-8, and a file name that is not UTF-8 (bytes on Linux) written back as its bytes
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape"}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_save(obj, path: str | os.PathLike) -> Path:
    with _atomic(path, "wb") as f:
        import torch  # deferred: the ground floor never loads torch (tkvr --help stays fast)

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
    return atomic_write_text(json.dumps(obj, indent=1, default=str), path)


@contextmanager
def quiet_pickle():
    """torch warns about the protocol of a raw pickle before refusing it: tkvr's one line says it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        yield


SEAL = "v2:"  # the digest covers plain values too; a checksum without it covers the tensors only


def checksum(state, plain: bool = True) -> str:
    """A digest of everything in a checkpoint (or an embeddings file) that decides a result,
    written at save and compared at every load: every tensor (its key path, dtype, shape and
    bytes) and every plain value (the class names, whose order labels the head's rows, the config,
    the counters), so a byte changed on disk inside a tensor (which torch.load does not notice) or
    two class names swapped is refused instead of used. plain=False: the tensors only, as
    checkpoints written before SEAL."""
    import torch  # deferred: the ground floor never loads torch at import

    h = hashlib.blake2b(digest_size=16)

    def walk(x, where: str) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}|{t.dtype}|{tuple(x.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # no copy: the buffer itself
        elif isinstance(x, (str, int, float, bool, type(None))):
            if plain:  # the type too: 1, 1.0, True and "1" differ
                h.update(f"{where}|{type(x).__name__}|{x!r}|".encode("utf-8", "surrogatepass"))
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                if not (where == "" and k in ("checksum", "path")):
                    walk(x[k], f"{where}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{where}/{i}")

    walk(state, "")
    return (SEAL if plain else "") + h.hexdigest()


def safe_load(path: str | os.PathLike, what: str = "file"):
    """torch.load with weights_only=True; any refusal becomes a one-line TkvrError."""
    path = Path(path)
    if path.is_dir():
        raise TkvrError(f"{what} '{path}' is a folder, not a file")
    if not path.is_file():
        raise TkvrError(f"{what} '{path}' does not exist")
    if not os.access(path, os.R_OK):
        raise TkvrError(f"{what} '{path}': no permission to read it; give it read permission (chmod +r)")
    import torch  # deferred: the ground floor never loads torch (tkvr --help stays fast)

    try:
        with quiet_pickle():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(path):
            raise TkvrError(
                f"{what} '{path}' was refused: it is a raw pickle, not a torch.save file; tkvr reads "
                "only torch.save files of tensors and plain data"
            ) from None
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = next(
            (ln.split("error: ")[-1] for ln in lines if "Unsupported global" in ln),
            lines[0] if lines else type(e).__name__,
        )
        raise TkvrError(
            f"{what} '{path}' was refused: it holds objects other than tensors and plain data "
            f"(weights-only load: {first[:160]}); only load files you trust from tkvr or torch.save"
        ) from None
    except Exception as e:  # noqa: BLE001 - weights-only: any failure is the file's (cut, damaged)
        raise TkvrError(
            f"{what} '{path}' is not a readable torch file ({type(e).__name__}); "
            "was it truncated or written by another program?"
        ) from None


# ---------------------------------------------------------------- validated readers of text formats
# Every text file tkvr reads back (config.yaml, report.json, steps.csv, sample files, lists) goes
# through one of these: a parse error of any kind becomes one TkvrError line naming the file.
def read_text(path: str | os.PathLike, what: str = "file", names: bool = False) -> str:
    """UTF-8 text; a byte-order mark (as Windows editors write) is not part of the first line.
    names: a file of file names (a list file, --out rows), whose bytes that are not UTF-8 are
    kept as they are (surrogateescape), as Linux keeps names: they open the same file again."""
    try:
        return Path(path).read_text(encoding="utf-8-sig", errors="surrogateescape" if names else "strict")
    except FileNotFoundError:
        raise TkvrError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TkvrError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise TkvrError(f"{what} {path} is not UTF-8 text; was it written by another program?") from None
    except OSError as e:
        raise TkvrError(f"{what} {path}: cannot read it ({e.strerror or type(e).__name__})") from None


def _kind(data, kind: type, what: str, path) -> None:
    if not isinstance(data, kind):
        want = {dict: "a mapping", list: "a list"}.get(kind, kind.__name__)
        raise TkvrError(
            f"{what} {path}: expected {want}, found {type(data).__name__}; was it edited or cut short?"
        )


def read_yaml(path: str | os.PathLike, what: str = "file", kind: type = dict):
    """YAML with the safe loader only (tags that would build objects are refused)."""
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TkvrError(f"{what} {path} is not valid YAML ({first[:120]})") from None
    except (ValueError, TypeError, RecursionError) as e:  # e.g. a date field that is no date
        raise TkvrError(f"{what} {path} is not valid YAML ({type(e).__name__})") from None
    if data is None and kind is dict:
        data = {}
    _kind(data, kind, what, path)
    return data


def read_json(path: str | os.PathLike, what: str = "file", kind: type = dict):
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise TkvrError(
            f"{what} {path} is not valid JSON ({str(e).splitlines()[0][:120]}); was it cut short?"
        ) from None
    _kind(data, kind, what, path)
    return data


def finite(text: str) -> float:
    """float(text), refusing NaN and infinities (ValueError, as for any other non-number)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def writable(problems: list[str], flag: str, path: str | None, folder: bool = False) -> None:
    """`path` can be written (a file, or a folder when `folder`): checked before any work, so a
    result is never computed and then lost. Nothing is left behind by the check. Problems are
    appended to `problems`, each naming `flag`."""
    if not path:
        return
    p = Path(path)
    if p.exists() and p.is_dir() != folder:
        problems.append(
            f"{flag} {path} is a {'file' if folder else 'folder'}; give a "
            f"{'folder' if folder else 'file name'}"
        )
        return
    where = p if folder and p.is_dir() else p.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        problems.append(f"{flag} {path}: {where} is a file, not a folder")
        return
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        problems.append(f"{flag} {path}: cannot write in {where} ({e.strerror or type(e).__name__})")
