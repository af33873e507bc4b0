"""The `tkvr` command line. It only parses flags into a config and calls commands/<name>.run.

Every option is derived from a setting declared once in tkvr.config (`options`), and the flags
parse back into that config (`parse`). Nothing here imports torch: `tkvr --help` answers without
loading it.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING

import click

from tkvr import __version__
from tkvr.config import (
    CheckConfig,
    DemoConfig,
    EmbedConfig,
    EvalConfig,
    FewshotConfig,
    PlotConfig,
    PredictConfig,
    PrepareConfig,
    TrainConfig,
    ZeroshotConfig,
    build,
    leaves,
)
from tkvr.errors import WRITE_FAULTS, Fault, TkvrError, one_line

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


def _config_file(ctx, param, value):
    """--config FILE.yaml: its keys are flag names; flags given on the command line win."""
    if not value:
        return value
    import yaml

    try:
        data = yaml.safe_load(open(value, encoding="utf-8-sig")) or {}
    except OSError:
        raise TkvrError(f"--config {value}: no such file") from None
    except yaml.YAMLError as e:
        raise TkvrError(f"--config {value}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TkvrError(f"--config {value}: expected a mapping of flag names to values")
    names = {p.name: p for p in ctx.command.params}
    flags = {o.lstrip("-"): p.name for p in ctx.command.params for o in getattr(p, "opts", [])}
    settings = leaves(ctx.command.callback.__tkvr_config__)
    # A run's own config.yaml holds groups (model:, data:, ...): their keys are settings too.
    items = [(k2, v2) for k, v in data.items() for k2, v2 in (v.items() if isinstance(v, dict) else [(k, v)])]
    flat = {}
    for k, v in items:
        if k in settings and not settings[k].metadata.get("cli", True):
            continue  # recorded by tkvr (the command line, betas), not a flag
        if str(k).replace("-", "_") == "out" and isinstance(data.get("run"), dict):
            continue  # a run's config names that run's folder; the new run goes to --out
        key = str(k).lstrip("-")
        key = flags.get(key, key.replace("-", "_"))
        if key not in names or key == "config":
            raise TkvrError(f"--config {value}: {k!r} is not a flag of tkvr {ctx.command.name}")
        if isinstance(v, list):
            v = tuple(v)
        elif v is None and getattr(names[key], "multiple", False):
            continue  # `t1d_blocks: null` in a run's config.yaml: not given
        elif getattr(names[key], "multiple", False):
            v = (v,)  # one value of a repeatable flag (`template: "a video of {}."`), not its characters
        flat[key] = v
    ctx.default_map = {**(ctx.default_map or {}), **flat}
    return value


class Finite(click.ParamType):
    """A float flag: NaN and infinities are refused by name (`--lr nan` would train a model of NaNs)."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


_TYPES = {"int": int, "float": Finite(), "str": str, "bool": bool}


def _option(name: str, f):
    """The click option of one setting (tkvr.config.setting): flag, type, default, choices, help."""
    meta = f.metadata
    flag = meta.get("flag") or "--" + name.replace("_", "-")
    kind = str(f.type).replace(" | None", "").strip()
    multiple = kind.startswith("list[")
    kind = kind[5:-1] if multiple else kind
    default = None if f.default is MISSING else f.default
    kw = dict(help=meta["help"], required=meta["required"])
    if meta["required"]:  # no default at all: click counts even None as a given value
        ptype = click.Choice(list(meta["choices"])) if meta["choices"] else _TYPES[kind]
        return click.option(flag, name, type=ptype, **kw)
    if meta.get("shown"):
        kw["show_default"] = meta["shown"]
    if kind == "bool":
        if meta.get("negatable"):
            return click.option(f"{flag}/--no-{flag[2:]}", name, default=default, **kw)
        return click.option(flag, name, is_flag=True, default=bool(default), **kw)
    ptype = click.Choice(list(meta["choices"])) if meta["choices"] else _TYPES[kind]
    return click.option(
        flag, name, type=ptype, default=None if multiple else default, multiple=multiple, **kw
    )


def options(cls, config_file: bool = False):
    """The options of a command, derived from the settings of its config class, in order."""

    def decorate(fn):
        for name, f in reversed(list(leaves(cls).items())):
            if f.metadata.get("cli", True):
                fn = _option(name, f)(fn)
        if config_file:
            fn = click.option(
                "--config",
                type=click.Path(dir_okay=False),
                callback=_config_file,
                is_eager=True,
                expose_value=False,
                help="YAML file whose keys are flag names; flags override it.",
            )(fn)
        fn.__tkvr_config__ = cls  # for the test that every option has exactly one declaration
        return fn

    return decorate


def parse(cls, kw: dict):
    """Parsed flags -> the command's config (repeated options: a list, or None when not given)."""
    kw = {k: (list(v) or None) if isinstance(v, tuple) else v for k, v in kw.items()}
    if "command" in leaves(cls):
        kw["command"] = " ".join(["tkvr"] + ARGV)
    return build(cls, kw)


@cli.command(context_settings=CONTEXT)
@options(EmbedConfig)
def embed(**kw):
    """Compute the class-embedding matrix [C, D] that serves as the frozen classifier.

    \b
    Example:
      tkvr embed --classes labels.txt --backbone ViT-B/16 --out k400_vitb16.pt --plot corr.png
    """
    from tkvr.commands import embed as cmd

    cmd.run(parse(EmbedConfig, kw))


@cli.command(context_settings=CONTEXT)
@options(CheckConfig)
def check(**kw):
    """Read every sample of a split the way training will; report missing, empty and unreadable
    files, the class count and samples per class. Exit 0 when every sample reads, 1 otherwise.

    \b
    Example:
      tkvr check --data ucf101 --data-root /data --split val --json ucf_val.json
    """
    from tkvr.commands import check as cmd

    sys.exit(cmd.run(parse(CheckConfig, kw)))


@cli.command(context_settings=CONTEXT)
@options(PrepareConfig)
def prepare(**kw):
    """Rewrite a dataset once into a form that trains fast: videos re-encoded at a modest size with
    a key frame every few frames; a new dataset folder that --data takes. Resumable.

    \b
    Example:
      tkvr prepare --data k400 --data-root /data --out /data/k400_fast && tkvr train --data /data/k400_fast
    """
    from tkvr.commands import prepare as cmd

    cmd.run(parse(PrepareConfig, kw))


@cli.command(context_settings=CONTEXT)
@options(TrainConfig, config_file=True)
def train(**kw):
    """Fine-tune the visual encoder with a frozen text classifier.

    \b
    Example:
      tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 8 --out runs/k400_b16
    """
    from tkvr.commands import train as cmd

    cmd.run(parse(TrainConfig, kw))


@cli.command("eval", context_settings=CONTEXT)
@options(EvalConfig)
def eval_(**kw):
    """Score a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

    \b
    Example:
      tkvr eval --checkpoint runs/k400_b16 --views 4x3 --json runs/k400_b16/eval_4x3.json
    """
    from tkvr.commands import eval as cmd

    cmd.run(parse(EvalConfig, kw))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1)
@options(PredictConfig)
def predict(**kw):
    """Top-k labels with scores for video or image files.

    \b
    Example:
      tkvr predict clip.mp4 photo.jpg --checkpoint runs/k400_b16 --top-k 3 --labels "surfing,skiing,cooking"
    """
    from tkvr.commands import predict as cmd

    cmd.run(parse(PredictConfig, kw))


@cli.command(context_settings=CONTEXT)
@options(FewshotConfig, config_file=True)
def fewshot(**kw):
    """K-shot C-way training over all classes (the paper's Table 8), one run per K and seed.

    \b
    Example:
      tkvr fewshot --data k400 --data-root /data --backbone ViT-B/16 --shots 1,2,4,8,16 --repeats 3
    """
    from tkvr.commands import fewshot as cmd

    cmd.run(parse(FewshotConfig, kw))


@cli.command(context_settings=CONTEXT)
@options(ZeroshotConfig, config_file=True)
def zeroshot(**kw):
    """Zero-shot recognition of unseen classes (the paper's Table 9): w/o and w/ training.

    \b
    Example:
      tkvr zeroshot --train K300 --eval K100 --data-root /data --backbone ViT-B/16 --protocol half
    """
    from tkvr.commands import zeroshot as cmd

    cmd.run(parse(ZeroshotConfig, kw))


@cli.command(context_settings=CONTEXT)
@click.argument("figure", required=False, default="")
@click.argument("inputs", nargs=-1)
@options(PlotConfig)
def plot(**kw):
    """Draw a figure of the paper from runs: correlation (Fig. 1), fractions (Fig. 3), loss (Fig. 4).

    \b
    Examples:
      tkvr plot correlation runs/k400_learned --out corr.png      # a run's head, or an embeddings file
      tkvr plot fractions runs/lf --out fractions.svg             # runs (or folders of runs) of two heads
      tkvr plot loss runs/text runs/learned --out loss.png
    """
    from tkvr.commands import plot as cmd

    cmd.run(parse(PlotConfig, kw))


@cli.command(context_settings=CONTEXT)
@options(DemoConfig)
def demo(**kw):
    """The toy world end to end, offline, on a CPU: embed -> zero-shot -> train -> eval.

    \b
    Example:
      tkvr demo --out runs/demo
    """
    from tkvr.commands import demo as cmd

    cmd.run(parse(DemoConfig, kw))


def main(argv=None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="tkvr", standalone_mode=False)
    except TkvrError as e:
        from tkvr.commands import NotBuilt

        click.echo(f"tkvr: error: {one_line(e)}", err=True)
        sys.exit(1 if isinstance(e, (NotBuilt, Fault)) else 2)
    except OSError as e:
        if e.errno not in WRITE_FAULTS:
            raise
        # A fault of the machine, not of the request (disk full, a folder turned read-only):
        # atomic writes left every earlier file whole.
        click.echo(f"tkvr: error: cannot write {e.filename or 'a file'}: {e.strerror}", err=True)
        sys.exit(1)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "tkvr"
        click.echo(f"tkvr: error: {e.format_message()} (see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"tkvr: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("tkvr: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("tkvr: interrupted", err=True)
        sys.exit(130)
    sys.exit(code or 0)
