"""The commands, one module each (`tkvr/commands/<name>.py`): the command's settings class (composed
of the groups declared beside the code that reads them), its validation, its printing and the call
into the library, and one `COMMAND` row. `tkvr.cli` turns each row into a click command.

A command module imports the library only inside its functions, so `tkvr --help` loads neither
torch nor a model.
"""

from __future__ import annotations

from tkvr.commands import (
    backbones,
    check,
    convert,
    demo,
    embed,
    export,
    fewshot,
    plot,
    predict,
    prepare,
    train,
    zeroshot,
)
from tkvr.commands import eval as evaluate
from tkvr.commands.shared import Command, NotBuilt

COMMANDS: tuple[Command, ...] = tuple(
    m.COMMAND
    for m in (
        embed,
        backbones,
        check,
        prepare,
        train,
        evaluate,
        predict,
        export,
        convert,
        fewshot,
        zeroshot,
        plot,
        demo,
    )
)
__all__ = ["COMMANDS", "Command", "NotBuilt"]
