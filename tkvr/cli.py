"""The `tkvr` command line: one click command per row of `tkvr.commands.COMMANDS`, all run by
the same dispatcher (`run`): flags -> settings -> validation -> the library -> the result shown.

Every option is derived from a setting declared once (`tkvr.base.settings.options`), and the flags
parse back into that config (`parse`). Nothing here imports torch: `tkvr --help` answers without
loading it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from tkvr import __version__
from tkvr.base.errors import WRITE_FAULTS, Fault, Preempted, TkvrError, one_line
from tkvr.base.procs import end_with_launcher, start_readers
from tkvr.base.progress import (
    WRITTEN,
    is_rank_zero,
    leave_word,
    publish,
    quiet_libraries,
    say,
    say_written,
    show_plan,
    status,
)
from tkvr.base.settings import (
    SECTIONS,
    build,
    choice_problems,
    fail_if,
    from_run,
    leaves,
    options,
    sections,
    value_of,
)
from tkvr.commands import COMMANDS, Command, NotBuilt
from tkvr.model.settings import SHAPE_KEYS
from tkvr.run.auto import run_of
from tkvr.run.settings import RECIPES

ARGV: list[str] = []  # the arguments of this invocation, for reports
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tkvr")
def cli():
    """tkvr: fine-tune a CLIP visual encoder for video and image recognition, with a frozen
    classifier made of text embeddings of the class names (Text4Vis).

    \b
    Start here (offline, a CPU is enough):
      tkvr demo
    Then with your own videos (a folder of class folders):
      tkvr check --data data && tkvr train --data data --out runs/mine
    """


def given(kw: dict) -> set[str]:
    """The settings named on the command line or in a --config file (not left at their default)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set(kw)
    return {k for k in kw if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)}


def parse(cls, kw: dict):
    """Parsed flags -> the command's config (repeated options: a list, or None when not given).
    With --resume, what was not given comes from the run's own config.yaml."""
    kw = {k: (list(v) or None) if isinstance(v, tuple) else v for k, v in kw.items()}
    if kw.get("recipe") in RECIPES:  # its values where no flag (or --config) gave one
        named = given(kw)
        chosen = {k: v for k, v in RECIPES[kw["recipe"]].items() if k in kw and k not in named}
        kw = {**kw, **chosen, "from_recipe": sorted(chosen) or None}
    if isinstance(kw.get("resume"), str) and kw["resume"]:  # a run's --resume (predict's is a switch)
        run = run_of(kw["out"], kw["resume"])
        named = given(kw) - {"out", "resume"}
        kw = from_run(kw, named, run / "config.yaml", config_cls=cls)
        if (run / "config.yaml").is_file():
            kw["_from_file"] = (run / "config.yaml", set(leaves(cls)) - named)
            changed = ", ".join("--" + k.replace("_", "-") for k in sorted(named)) or "none"
            say(f"resuming {run} with its own settings (config.yaml); given here: {changed}")
    if kw.get("init"):  # what `train --init RUN` takes from RUN unless given: what shapes its weights
        start = Path(kw["init"])
        start = (start if start.is_dir() else start.parent.parent) / "config.yaml"
        kw = from_run(kw, given(kw), start, (*SHAPE_KEYS, "class_names"), config_cls=cls)
    if "command" in leaves(cls):
        kw["command"] = " ".join(["tkvr"] + ARGV)
    source = kw.pop("_from_file", None)
    cfg = build(cls, kw)
    if source:
        object.__setattr__(cfg, "_from_file", source)
    return cfg


def validate(cfg) -> None:
    """The settings' own checks; where a resumed run took a setting from its config.yaml, a
    refusal of that value names the file, not a flag the user never gave."""
    try:
        cfg.validate()
        fail_if(choice_problems(cfg))  # choices and typed texts a command's checks skipped
    except TkvrError as e:
        path, taken = getattr(cfg, "_from_file", (None, ()))
        flags = {"--" + k.replace("_", "-") for k in taken}
        if path and flags & set(e.about):
            raise TkvrError(
                f"{e} (a value of the run's config.yaml {path}; was it edited or cut short?)"
            ) from None
        raise


def run(command: Command, kw: dict) -> int:
    """One command: flags -> settings, validated once here (the library receives valid settings),
    the library function, its result shown and written to --json. -> the exit code."""
    cfg = parse(command.settings, kw)
    validate(cfg)
    dry = value_of(cfg, "dry_run", False)
    if not dry and command.readers and value_of(cfg, "workers", 0) != 0:  # None: the machine's default
        start_readers()
    if command.libraries:
        with status(f"tkvr {command.name}: loading torch and the model libraries"):
            # deferred (tkvr --help loads no torch): torch, Fabric and open_clip, the slow imports,
            # here under the spinner and before the libraries' loggers are quieted
            from tkvr.model import backbones, text  # noqa: F401  (the hub and transformers, via open_clip)
            from tkvr.run import launch  # noqa: F401
    quiet_libraries(value_of(cfg, "verbose", False))  # after the import: libraries set theirs then
    WRITTEN.clear()
    result = (command.plan if dry and command.plan else command.run)(cfg)
    if dry:
        show_plan(result)
        return 0
    show = command.show
    publish(result, (lambda r: show(r, cfg)) if show else (lambda r: None), value_of(cfg, "json"))
    say_written()  # before the exit status: a run that read some inputs still wrote its files
    return command.status(result) if command.status else 0


class Sectioned(click.Command):
    """A command whose --help lists its options in sections, as config.yaml groups them."""

    def format_options(self, ctx, formatter):
        where = sections(self.callback.__tkvr_config__, f"{self.name} options")
        groups: dict[str, list] = {}
        for p in self.get_params(ctx):
            if isinstance(p, click.Argument):
                continue  # click lists them itself, under "Positional arguments"
            row = p.get_help_record(ctx)
            if row is not None:
                groups.setdefault(where.get(p.name, "Other options"), []).append(row)
        order = [f"{self.name} options", *dict.fromkeys(SECTIONS.values()), "Other options"]
        for title in sorted(groups, key=order.index):
            rows = groups[title]
            with formatter.section(title):
                formatter.write_dl(rows)


def add(command: Command) -> None:
    def callback(**kw):
        return run(command, kw)

    fn = options(command.settings, config_file=command.config_file)(callback)
    for name, kw in reversed(command.arguments):
        fn = click.argument(name, **kw)(fn)
    cli.add_command(
        click.command(command.name, cls=Sectioned, help=command.help, context_settings=CONTEXT)(fn)
    )


for _command in COMMANDS:
    add(_command)


def main(argv=None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    end_with_launcher()
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \udcXX
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = cli.main(args=argv, prog_name="tkvr", standalone_mode=False)
    except (click.Abort, KeyboardInterrupt):
        # before RuntimeError: click's Abort (Ctrl-C inside click) is one. Every file tkvr writes
        # is written whole or not at all, so what was finished before the key stays.
        click.echo("tkvr: interrupted; everything written before it is kept", err=True)
        sys.exit(130)
    except Preempted as e:  # a scheduler's signal: the checkpoint of the last step is written
        if is_rank_zero():
            click.echo(f"tkvr: {e.message}", err=True)
        sys.exit(128 + e.signum)
    except TkvrError as e:
        if is_rank_zero():  # under DDP every rank meets the same refusal: it is said once
            click.echo(f"tkvr: error: {one_line(e)}", err=True)
        else:  # rank 0 says it if this process alone refused (tkvr.run.launch names a dead peer)
            leave_word(one_line(e))
        sys.exit(1 if isinstance(e, (NotBuilt, Fault)) else 2)
    except OSError as e:
        if e.errno not in WRITE_FAULTS:
            raise
        # A fault of the machine, not of the request (disk full, a folder turned read-only):
        # atomic writes left every earlier file whole.
        click.echo(f"tkvr: error: cannot write {e.filename or 'a file'}: {e.strerror}", err=True)
        sys.exit(1)
    except RuntimeError as e:
        if "torchvision::" not in str(e) or "does not exist" not in str(e):
            raise
        # torchvision built for another torch (a mixed install): a 40-line traceback otherwise
        click.echo(
            "tkvr: error: torch and torchvision do not match (torchvision's operators are missing); "
            "reinstall them together: pip install --force-reinstall torch torchvision "
            "(with the same --index-url as before, e.g. .../whl/cpu)",
            err=True,
        )
        sys.exit(2)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "tkvr"
        click.echo(f"tkvr: error: {e.format_message()} (see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"tkvr: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code or 0)
