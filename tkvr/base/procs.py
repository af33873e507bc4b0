"""How reader processes start: from a fork server, never by forking the command's own process.

A process that decoded video itself holds FFmpeg's and OpenMP's threads; a fork of it can inherit
a lock one of them held and wait forever (a test suite once hung so; a `tkvr fewshot` sweep, many
runs in one process, could too). The fork server is a clean process that imports the data code
once and runs no threads; each reader is a fork of it. Starting it costs an import of torch and
the data code (about 5 s on a 2-core machine), so the command line starts it in the background
as soon as it knows a command will read with workers, while it loads its own libraries.

A reader's parent is the fork server, not the command, so the DataLoader's own check (is my
parent alive?) never fires when the command is killed: the reader would wait on its queue forever
and, as it holds the server's liveness pipe, keep the server (and through both, the resource
tracker) alive too. So each reader watches the command's process itself and ends when it ends,
however it ends; the server and the tracker then see their pipes close and end by themselves.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import select
import signal
import threading
import time
from contextlib import contextmanager

PRELOAD = ["tkvr.data.loader"]  # what every reader needs: imported once, in the server


def readers():
    """The multiprocessing context of every DataLoader with workers."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def loader_args(workers: int) -> dict:
    """The DataLoader arguments of `workers` readers: started from the fork server, each ending
    with this process."""
    if workers <= 0:
        return {"num_workers": 0}
    return {
        "num_workers": workers,
        "multiprocessing_context": readers(),
        "worker_init_fn": functools.partial(watch, os.getpid()),
    }


def watch(command: int, worker_id: int = 0, code: int = 0) -> None:
    """End this process (exit `code`) when the process `command` ends: a thread that waits on a
    pidfd, Linux's handle on a process that no reused pid can fool; elsewhere a poll each second.
    worker_id: the DataLoader's argument to a worker_init_fn, unused."""
    try:
        fd = os.pidfd_open(command)
    except ProcessLookupError:  # gone before this process started watching
        os._exit(code)
    except (OSError, AttributeError):
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _alive(command):
                time.sleep(1.0)
        os._exit(code)

    threading.Thread(target=wait, name="tkvr-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


LAUNCHER = "TKVR_LAUNCHER_PID"  # set by a process that launches ranks: its children watch it


def end_with_launcher() -> None:
    """In a rank a launcher started (Lightning's for --devices N: LOCAL_RANK and LAUNCHER set;
    torchrun's agent: LOCAL_RANK alone, the parent): end with the launcher, however it ends,
    instead of waiting at a collective for peers that are gone (up to the backend's 30-minute
    timeout). From the start, so a launcher killed while this rank still imports is seen too
    (the parent would then be init already: the launcher's pid is passed down for that)."""
    if os.environ.get("LOCAL_RANK"):
        launcher = os.environ.get(LAUNCHER)
        watch(int(launcher) if launcher and launcher.isdigit() else os.getppid(), code=1)


def start_readers() -> None:
    """Start the fork server now; it imports while this process goes on."""
    from multiprocessing import forkserver  # deferred: only commands that read with workers

    readers()
    with deaf_children():
        forkserver.ensure_running()


@contextmanager
def deaf_children():
    """Processes started in this block ignore Ctrl-C: a terminal sends SIGINT to the whole
    process group, and a child still importing (a fork server, a pool's encoder: seconds before
    it sets handlers of its own) would print a traceback of the import. An ignored signal stays
    ignored across exec, and Python then installs no KeyboardInterrupt handler. This process
    answers Ctrl-C and ends its children. The disposition is the whole process's, so a press in
    the block's milliseconds (8-24 ms for a pool of 2 on a 2-core machine) is lost: blocking it
    instead would not hold it, as another thread that does not block it takes it and drops it."""
    try:
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are the main thread's
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
