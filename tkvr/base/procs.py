"""How reader processes start: from a fork server, never by forking the command's own process.

A process that decoded video itself holds FFmpeg's and OpenMP's threads; a fork of it can inherit
a lock one of them held and wait forever (a test suite once hung so; a `tkvr fewshot` sweep, many
runs in one process, could too). The fork server is a clean process that imports the data code
once and runs no threads; each reader is a fork of it. Starting it costs an import of torch and
the data code (about 5 s on a 2-core machine), so the command line starts it in the background
as soon as it knows a command will read with workers, while it loads its own libraries.
"""

from __future__ import annotations

import multiprocessing as mp

PRELOAD = ["tkvr.data.loader"]  # what every reader needs: imported once, in the server


def readers():
    """The multiprocessing context of every DataLoader with workers."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_readers() -> None:
    """Start the fork server now; it imports while this process goes on."""
    from multiprocessing import forkserver  # deferred: only commands that read with workers

    readers()
    forkserver.ensure_running()
