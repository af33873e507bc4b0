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
    """A mistake in what the user asked for (flag, file, value), not a fault of tkvr.

    `about`: the flags (or files) it is about, so that a caller adds context without reading the
    message: the dispatcher names a resumed run's config.yaml where its value was refused,
    zeroshot names --train where the dataset's reader said --data (`on` / `renamed`)."""

    def __init__(self, message: str = "", about: tuple[str, ...] | str = ()):
        super().__init__(message)
        self.about = (about,) if isinstance(about, str) else tuple(about)
        self.says = None  # what is wrong, without the flag (`on`)

    @classmethod
    def on(cls, flag: str, says: str) -> "TkvrError":
        """An error about `flag`: the message is the flag, then what `says`."""
        e = cls(f"{flag} {says}", flag)
        e.says = says
        return e

    def renamed(self, flag: str) -> "TkvrError":
        """The same error about `flag` (a command's own name for the setting); itself where it
        was not made by `on`."""
        return type(self).on(flag, self.says) if self.says is not None else self


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
