"""Typed settings for every command, each declared once. No torch here: `tkvr --help` stays fast.

A setting is a dataclass field made by `setting(default, help, ...)`: its name, type, default,
choices and help live in that one declaration. `tkvr.cli` derives the click option from it
(`--temporal-layers` from `temporal_layers`) and builds the config a command receives from the
parsed flags, so no default or choice list exists twice. A command that shows a setting of
another group with another default (`tkvr check --split` defaults to train, `tkvr eval --split`
to val) borrows the declaration with `borrow(Group, name, default=...)` instead of writing it
again.

Settings whose value depends on a checkpoint or a dataset (`--fold`, `--data` of eval,
templates) default to None, "unset", until the command resolves them; a literal default would
hide the checkpoint's value.

Validation collects every problem and names the flag the user typed; the CLI prints them as one
line (problems joined by '; ') and exits with code 2. Every command validates before its first
side effect.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import MISSING, field
from pathlib import Path

import click

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import read_yaml, writable


def setting(
    default=dataclasses.MISSING,
    help: str = "",
    *,
    choices=None,
    flag: str | None = None,
    cli: bool = True,
    required: bool = False,
    negatable: bool = False,
    shown: str | None = None,
    parse=None,
    text=None,
):
    """One setting: a dataclass field whose metadata the CLI turns into its option.

    flag: the option's name when it is not `--` + the field name with dashes (`--template`);
    cli=False: a config value with no option (set by code); negatable: `--x/--no-x`;
    shown: the default as help shows it, where the value is resolved later ("cores per device - 1");
    parse / text: a setting typed as text ('4x3') whose value is typed ((4, 3)): `parse` turns the
    text into the value once, when it is set (a TkvrError: kept as `Unparsed` for `validate` to
    report), and `text` writes the value back as config.yaml and --help show it (a list setting
    with `text` is one option's text, '1,3,all'; without, its option is repeated).
    """
    meta = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "flag": flag,
        "cli": cli,
        "required": required,
        "negatable": negatable,
        "shown": shown,
        "parse": parse,
        "text": text,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def borrow(group, name: str, **changes):
    """Another group's declaration of `name`, for a command that shows it too; `changes` may set
    another default, help or flag. The metadata keeps the declaring field (`origin`)."""
    f = group.__dataclass_fields__[name]
    meta = {**f.metadata, "origin": f.metadata.get("origin", f)}
    default = changes.pop("default", f.default)
    for k, v in changes.items():
        if k not in meta:
            raise TypeError(f"borrow: unknown change {k!r}")
        meta[k] = tuple(v) if k == "choices" else v
    return field(default=default, metadata=meta)


def declaration(f: dataclasses.Field) -> dataclasses.Field:
    """The field that declared a setting: itself, or the one it was borrowed from."""
    return f.metadata.get("origin", f)


def fail_if(problems: list[str]) -> None:
    """Refuse with every problem in one line. Each problem begins with the flag it is about (the
    rule every check here and in the groups' `validate` follows): the error carries those flags."""
    if problems:
        about = [m.group(0) for m in (re.match(r"--[a-z0-9][a-z0-9-]*", p) for p in problems) if m]
        raise TkvrError("; ".join(problems), about)


def at_least(problems: list[str], obj, minimum, *names: str) -> None:
    """Each named setting of `obj` that is set and below `minimum` is a problem naming its flag."""
    for name in names:
        v = getattr(obj, name)
        if v is not None and v < minimum:
            problems.append(f"--{name.replace('_', '-')} must be >= {minimum}, got {v}")


SUFFIXES = (".png", ".svg", ".pdf")  # the figure formats matplotlib writes


def figure_problems(problems: list[str], flag: str, path: str | None) -> None:
    """A figure to write: its suffix names a format matplotlib writes, and it can be written."""
    if path and Path(path).suffix.lower() not in SUFFIXES:
        problems.append(f"{flag} {path}: end the name in .png, .svg or .pdf")
    writable(problems, flag, path)


# ---------------------------------------------------------------- flat flags <-> grouped configs
def leaves(cls, hidden: tuple = ()) -> dict[str, dataclasses.Field]:
    """Every setting of a (nested) config by name. A name the command shows itself hides the
    same name in its nested groups (listed in the class's `hidden`)."""
    out: dict[str, dataclasses.Field] = {}
    hidden = hidden or getattr(cls, "hidden", ())
    for f in dataclasses.fields(cls):
        if _is_group(f):
            inner = {n: sub for n, sub in leaves(f.default_factory, ()).items() if n not in hidden}
        else:
            inner = {f.name: f}
        for name, field_ in inner.items():
            if name in out:
                raise TypeError(f"{cls.__name__}: setting {name!r} appears twice")
            out[name] = field_
    return out


# Help sections, in the order config.yaml holds the groups (a command's own settings come first).
SECTIONS = {
    "model": "Model",
    "data": "Data",
    "source": "Data",
    "optim": "Optimisation",
    "run": "Run",
    "device": "Device",
}


def sections(cls, own: str = "Options", hidden: tuple = ()) -> dict[str, str]:
    """Setting name -> the help section it is listed under: the command's own settings under
    `own`, those of a group under the group's title (a nested train group: its groups' titles)."""
    out: dict[str, str] = {}
    hidden = hidden or getattr(cls, "hidden", ())
    for f in dataclasses.fields(cls):
        if _is_group(f):
            inner = sections(f.default_factory, SECTIONS.get(f.name, own), ())
            out.update({n: t for n, t in inner.items() if n not in hidden and n not in out})
        else:
            out.setdefault(f.name, own)
    return out


def choice_problems(obj, nested: bool = True) -> list[str]:
    """Every setting of a (nested) config whose value is not one of its declared choices: the
    declaration click builds its option from, so scripts meet the same refusal. nested=False:
    only the config's own settings (its groups check theirs)."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_group(f):
            problems += choice_problems(value) if nested else []
        elif isinstance(value, Unparsed):  # a typed setting's text that did not parse
            problems.append(value.problem)
        elif f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            problems.append(f"{flag} {value!r}: choose one of {', '.join(map(str, f.metadata['choices']))}")
    return problems


def value_of(obj, name: str, default=None):
    """The value of setting `name` wherever it sits in a (nested) config (`dry_run` of train is
    in its run group, of eval at the top), or `default` where the config has no such setting."""
    for f in dataclasses.fields(obj):
        if f.name == name:
            return getattr(obj, name)
        if _is_group(f):
            found = value_of(getattr(obj, f.name), name, MISSING)
            if found is not MISSING:
                return found
    return default


_KINDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def value_problem(f: dataclasses.Field, value) -> str | None:
    """Why `value` cannot be setting `f` (its declared type; a float must be finite), or None.
    The command line's values are typed by click; this checks those read from files (a run's
    config.yaml, a checkpoint's config) with the same declaration."""
    if f.metadata.get("parse"):
        parsed = parsed_value(f, value)
        return f"{value!r}: {parsed.problem}" if isinstance(parsed, Unparsed) else None
    kind = str(f.type).replace(" ", "")
    optional = kind.endswith("|None")
    kind = kind.removesuffix("|None")
    if value is None:
        return None if optional else "is empty"
    if kind.startswith(("list[", "tuple[")):
        inner = kind[kind.index("[") + 1 : -1].split(",")[0]
        if not isinstance(value, (list, tuple)):
            return f"{value!r} is not a list"
        return next((p for p in (_scalar(inner, v) for v in value) if p), None)
    return _scalar(kind, value)


def _scalar(kind: str, value) -> str | None:
    want = _KINDS.get(kind)
    if want is None:
        return None
    if not isinstance(value, want) or (kind != "bool" and isinstance(value, bool)):
        return f"{value!r} is not {'an' if kind == 'int' else 'a'} {kind}"
    if kind == "float" and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    return None


def type_problems(obj) -> list[str]:
    """Every setting of a (nested) config whose value is not of its declared type."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_group(f):
            problems += type_problems(value)
        else:
            problem = value_problem(f, value)
            if problem:
                problems.append(f"{f.name} {problem}")
    return problems


class Unparsed(str):
    """The text of a typed setting that did not parse; `problem` says why (its flag named)."""

    problem = ""


def parsed_value(f: dataclasses.Field, value):
    """Setting `f`'s value from its text (`setting(parse=...)`); a value already typed stays. A
    list of texts (a repeatable setting's, or a list in a YAML file) is handed to the parser whole."""
    parse = f.metadata.get("parse")
    text = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if parse is None or not text or isinstance(value, Unparsed):
        return value
    try:
        return parse(value)
    except TkvrError as e:
        bad = Unparsed(value)
        bad.problem = str(e)
        return bad


def plain(obj) -> dict:
    """A (nested) config as config.yaml holds it: typed settings written back as their text."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_group(f):
            out[f.name] = plain(value)
        elif f.metadata.get("text") and value is not None and not isinstance(value, Unparsed):
            out[f.name] = f.metadata["text"](value)
        else:
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else _copy(value)
    return out


def _copy(value):
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


class Frozen(TypeError):
    """A resolved run's settings were changed: resolution happens once, in one place."""


class Settings:
    """Base of every settings group: `freeze` makes an instance (and its groups) read-only, so a
    resolved run's settings cannot be changed afterwards by any layer."""

    _frozen = False

    def __setattr__(self, name, value):
        if self._frozen:
            raise Frozen(f"{type(self).__name__}.{name}: resolved settings are read-only; resolve again")
        f = self.__dataclass_fields__.get(name)
        if f is not None and f.metadata.get("parse"):
            value = parsed_value(f, value)  # typed once, here: no layer parses it again
        super().__setattr__(name, value)


def freeze(obj, frozen: bool = True):
    """Make a config and every group in it read-only (or writable again: frozen=False, for a
    copy that is resolved anew); returns it."""
    for f in dataclasses.fields(obj):
        if _is_group(f):
            freeze(getattr(obj, f.name), frozen)
    object.__setattr__(obj, "_frozen", frozen)
    return obj


def _is_group(f: dataclasses.Field) -> bool:
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


def build(cls, flat: dict, strict: bool = False):
    """A config from flat setting names; groups are built from the names they hold, the rest keep
    their declared defaults. strict: a name the config does not hold is an error."""
    if strict:
        unknown = [k for k in flat if k not in leaves(cls)]
        if unknown:
            raise TkvrError(f"unknown setting {unknown[0]!r}")
    hidden = getattr(cls, "hidden", ())
    kw = {}
    for f in dataclasses.fields(cls):
        if _is_group(f):
            kw[f.name] = build(f.default_factory, {k: v for k, v in flat.items() if k not in hidden})
        elif f.name in flat:
            kw[f.name] = flat[f.name]
    return cls(**kw)


# ---------------------------------------------------------------- click options from the declarations
def read_config_file(ctx, param, value):
    """--config FILE.yaml: its keys are flag names; flags given on the command line win."""
    if not value:
        return value

    data = read_yaml(value, "--config", kind=object) or {}
    if not isinstance(data, dict):
        raise TkvrError(f"--config {value}: expected a mapping of flag names to values")
    names = {p.name: p for p in ctx.command.params}
    flags = {o.lstrip("-"): p.name for p in ctx.command.params for o in getattr(p, "opts", [])}
    settings = leaves(ctx.command.callback.__tkvr_config__)
    # A run's own config.yaml holds groups (model:, data:, ...): their keys are settings too; its
    # `auto:` records what this machine made of the automatic ones, not settings.
    data = {k: v for k, v in data.items() if not (k == AUTO and isinstance(v, dict))}
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
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


_TYPES = {"int": int, "float": Finite(), "str": str, "bool": bool}


def option(name: str, f):
    """The click option of one setting (`setting`): flag, type, default, choices, help."""
    meta = f.metadata
    flag = meta.get("flag") or "--" + name.replace("_", "-")
    kind = str(f.type).replace(" | None", "").strip()
    # a typed setting written back as one text ('1,3,all') is one option; a list is repeatable
    multiple = kind.startswith("list[") and not meta.get("text")
    kind = kind[5:-1] if multiple else kind
    kind = "str" if meta.get("parse") else kind  # typed from its text: click hands over the text
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
                fn = option(name, f)(fn)
        if config_file:
            fn = click.option(
                "--config",
                type=click.Path(dir_okay=False),
                callback=read_config_file,
                is_eager=True,
                expose_value=False,
                help="YAML file whose keys are flag names; flags override it.",
            )(fn)
        fn.__tkvr_config__ = cls  # for the test that every option has exactly one declaration
        return fn

    return decorate


# Settings a resumed run takes from the command line even where its config.yaml says otherwise:
# where it goes and how far this invocation runs (--max-steps stops a smoke run, not the run).
NOT_RECORDED = ("out", "resume", "dry_run", "command", "max_steps")
RUN_GROUPS = ("model", "data", "optim", "run")  # what every run's config.yaml holds
AUTO = "auto"  # config.yaml's record of what the automatic values became (tkvr.run.auto)


def from_run(
    kw: dict, given: set[str], config_yaml: Path, only: tuple | None = None, config_cls=None
) -> dict:
    """`tkvr train --resume`: every setting not `given` on the command line (or by --config) is
    the run's own, from its config.yaml, so `--out RUN --resume auto` alone continues it. Given
    flags stay; the resume check refuses those that would change the model or the data. `only`:
    just these settings (`--init` takes the model's shape from the run it starts from)."""
    if not config_yaml.is_file():
        return kw
    what = "the run's config.yaml"
    recorded = read_yaml(config_yaml, what)
    groups = [g for name, g in recorded.items() if isinstance(g, dict) and name != AUTO]
    flat = {k: v for group in groups for k, v in group.items()}
    lacking = [g for g in RUN_GROUPS if not isinstance(recorded.get(g), dict)]
    if lacking:
        raise TkvrError(
            f"{what} {config_yaml}: no {', '.join(lacking)} group in it; was it edited or cut short?"
        )
    fields = leaves(config_cls) if config_cls else {}
    out = dict(kw)
    for k, v in flat.items():
        if only is not None and k not in only:
            continue
        if k in fields and k not in given and k not in NOT_RECORDED:
            problem = value_problem(fields[k], v)
            if problem:  # the run's own file is read as user input is: by the declaration
                raise TkvrError(f"{what} {config_yaml}: {k} {problem}; was it edited?")
        if k in out and k not in given and k not in NOT_RECORDED:
            out[k] = list(v) if isinstance(v, (list, tuple)) else v
    return out
