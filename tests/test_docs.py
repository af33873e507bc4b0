"""The README and docs/: every `tkvr ...` example parses as a tkvr command line (the command exists,
each flag is one of its flags, each value has its type and choices), and every relative link
resolves. A flag renamed or a page moved fails here, not in a reader's shell."""
import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def examples(text: str) -> list[tuple[str, bool]]:
    """The tkvr command lines of a page, each with whether it is whole: in code blocks (continued
    lines joined, comments dropped, `&&` / `;` / `|` chains split) a whole command line; in inline
    code spans a fragment (`tkvr eval --views 4x3`: its flags checked, required ones not asked)."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found += [(c, True) for c in chained(line) if c.startswith("tkvr ")]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", prose)
    found += [(c, False) for span in spans for c in chained(span) if c.startswith("tkvr ")]
    return found


def chained(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: not a command line
        return []
    parts, cur = [], []
    for w in words:
        if w in ("&&", ";", "|", "||"):
            parts.append(cur)
            cur = []
        else:
            cur.append(w)
    parts.append(cur)
    return [shlex.join(p) for p in parts if p]


EXAMPLES = [(page, cmd, whole) for page in PAGES for cmd, whole in examples(page.read_text())]


def test_the_pages_hold_examples_and_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme, re.S)
    assert blocks[:2] == ["pip install -e . && tkvr demo\n", 'pip install -e ".[dev]" && python -m pytest -q\n']
    assert len(EXAMPLES) > 150 and {p.name for p, _, _ in EXAMPLES} >= {"README.md", "commands.md", "paper.md"}


def problem(cmd: str, whole: bool) -> str | None:
    """Why `cmd` does not parse as a tkvr command line (None: it does). A fragment's missing
    required flags are filled with a stand-in, so its other flags are still checked."""
    from tkvr.cli import cli

    args = shlex.split(cmd)[1:]
    if not args or args[0] in ("-h", "--help", "--version"):
        return None
    if args[0] not in cli.commands:
        return f"no command {args[0]!r}"
    for _ in range(10):
        try:
            cli.commands[args[0]].make_context(args[0], args[1:])
            return None
        except click.MissingParameter as e:
            if whole:
                return e.format_message()
            args += [e.param.opts[0], "1"] if isinstance(e.param, click.Option) else ["1"]
        except click.ClickException as e:
            return e.format_message()
    return "too many required flags missing"


def test_a_bad_example_is_caught():
    assert problem("tkvr evl --checkpoint r", True) == "no command 'evl'"
    assert "No such option" in problem("tkvr eval --checkpoint r --viewz 4x3", True)
    assert "--checkpoint" in problem("tkvr eval --views 4x3", True)  # a whole line needs it
    assert problem("tkvr eval --views 4x3", False) is None  # a fragment does not
    assert "'x' is not a valid integer" in problem("tkvr predict --top-k x", False)  # after --checkpoint
    assert problem("tkvr eval", False) is None


@pytest.mark.parametrize("page, cmd, whole", EXAMPLES, ids=[f"{p.name}:{c[:60]}" for p, c, _ in EXAMPLES])
def test_every_example_parses_as_a_tkvr_command_line(page, cmd, whole, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(cmd)
    if "--config" in args:  # the example's YAML file, here empty: its keys are checked elsewhere
        (tmp_path / args[args.index("--config") + 1]).write_text("{}\n")
    assert problem(cmd, whole) is None, f"{page.name}: {cmd}: {problem(cmd, whole)}"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor of the page itself
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []
