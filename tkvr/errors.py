"""The one exception type for user mistakes.

A TkvrError carries a single line that names the flag, file or value at fault and what to do.
The CLI prints it without a traceback and exits with code 2.
"""


class TkvrError(Exception):
    """A mistake in what the user asked for (flag, file, value), not a fault of tkvr."""
