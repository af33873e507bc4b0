"""One module per command, each with a `run(cfg)`."""

from tkvr.errors import TkvrError


class NotBuilt(TkvrError):
    """A feature that a later release of tkvr builds; the CLI exits with code 1, not 2."""
