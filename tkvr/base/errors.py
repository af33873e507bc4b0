"""The one exception type for user mistakes.

A TkvrError carries a single line that names the flag, file or value at fault and what to do.
The CLI prints it without a traceback and exits with code 2.
"""

import errno

# Errors of the machine while writing (disk full, quota, read-only, file too large, I/O), and
# permission errors, which are the machine's only when they concern what tkvr writes.
DISK_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)
WRITE_FAULTS = DISK_FAULTS + (errno.EACCES, errno.EPERM)


class TkvrError(Exception):
    """A mistake in what the user asked for (flag, file, value), not a fault of tkvr."""


class Fault(TkvrError):
    """Something outside the request went wrong (disk full, a folder turned read-only): one line,
    exit code 1; what was written before it stays intact."""


def one_line(e: Exception) -> str:
    """The message of a TkvrError. One raised inside a DataLoader worker comes back wrapped with
    the worker's traceback (torch's ExceptionWrapper); its last line holds the message."""
    text = str(e).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].partition(": ")[2] or text.splitlines()[-1]
    return text


class Preempted(Exception):
    """A run stopped by a scheduler's signal (SIGTERM, SLURM's early SIGUSR1) after writing a
    checkpoint of its last step: the CLI says `message` (how to resume) and exits 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.message = signum, message
