"""The layout's rules, read from the code: layers that only import downwards, no cycle, an engine
that names no part of the model, one look inside Fabric's wrapper, a torch-free ground floor."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

TKVR = Path(__file__).resolve().parents[1] / "tkvr"
# Bottom to top. A module may import its own folder and the folders below it, never one above.
LAYERS = ["base", "data", "model", "run", "commands", "cli"]


def modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(TKVR.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in TKVR.rglob("*.py")
    }


def graph() -> dict[str, set[str]]:
    """Module -> the tkvr modules it imports, function-level imports included."""
    mods = modules()
    out = {}
    for name, p in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {
                    m for m in [node.module] + [f"{node.module}.{a.name}" for a in node.names] if m in mods
                }
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        out[name] = deps - {name, "tkvr"}
    return out


def layer(module: str) -> int | None:
    return LAYERS.index(folder(module)) if folder(module) in LAYERS else None


def folder(module: str) -> str:
    return (module.split(".") + [""])[1]  # tkvr.run.engine -> run; tkvr.cli -> cli


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    done, path = set(), []

    def visit(m):
        if m in path:
            return path[path.index(m) :] + [m]
        if m in done:
            return None
        path.append(m)
        for d in sorted(g.get(m, ())):
            found = visit(d)
            if found:
                return found
        path.pop()
        done.add(m)
        return None

    for m in sorted(g):
        found = visit(m)
        if found:
            return found
    return None


def test_the_folders_are_the_layers():
    top = {p.name for p in TKVR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top == {"base", "data", "model", "run", "commands"}
    loose = {p.stem for p in TKVR.glob("*.py")}
    assert loose == {"__init__", "__main__", "cli"}, loose  # every other module lives in its layer


def test_nothing_imports_upwards():
    upward = [
        (m, d)
        for m, deps in graph().items()
        for d in deps
        if layer(m) is not None and layer(d) is not None and layer(d) > layer(m)
    ]
    assert not upward, upward


def test_no_cycle_between_files_or_folders():
    g = graph()
    assert cycle(g) is None, " -> ".join(cycle(g))
    folders: dict[str, set[str]] = {}
    for m, deps in g.items():
        folders.setdefault(folder(m), set()).update(folder(d) for d in deps if folder(d) != folder(m))
    assert cycle(folders) is None, " -> ".join(cycle(folders))


def test_the_cycle_finder_finds_a_cycle():  # the two tests above rely on it
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_ground_floor_imports_no_torch():
    code = (
        "import sys, tkvr.base.config, tkvr.base.fileio, tkvr.base.progress, tkvr.base.choices, tkvr.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'open_clip')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_imports_sit_at_the_top_unless_said_why():
    """A function-level import is allowed only to keep `tkvr --help` (or an optional extra) from
    loading what it does not need; the line or the one above says so."""
    unexplained = []
    for name, p in modules().items():
        lines = p.read_text().splitlines()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        here = "".join(lines[inner.lineno - 2 : inner.end_lineno])
                        if "#" not in here:
                            unexplained.append(f"{name}:{inner.lineno}")
    assert not unexplained, unexplained


def test_one_look_inside_fabrics_wrapper_and_short_lines():
    """`unwrap` is the only code that looks inside Fabric's wrapper; no line of tkvr/ passes 110
    characters (ruff checks the same in CI)."""
    files = sorted(TKVR.rglob("*.py"))
    lines = [(p.name, i, ln) for p in files for i, ln in enumerate(p.read_text().splitlines(), 1)]
    hits = [f"{name}:{i}" for name, i, ln in lines if re.search(r"getattr\(.*[\"']module[\"']", ln)]
    assert len(hits) == 1 and hits[0].startswith("video_model.py:"), hits
    assert [f"{name}:{i}" for name, i, ln in lines if len(ln) > 110] == []


def test_command_modules_import_only_the_library():
    names = {p.stem for p in (TKVR / "commands").glob("*.py")} - {"__init__"}
    for p in (TKVR / "commands").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for m in mods:
                assert not (m.startswith("tkvr.commands.") and m.split(".")[2] in names), (p.name, m)


def test_a_short_engine_that_names_no_part_of_the_model():
    """The loop calls the model's own policy (loss, param_groups, begin_step, compile_visual): no
    parameter prefix, head attribute, loss choice or submodule of the model appears in its code."""
    source = (TKVR / "run" / "engine.py").read_text()
    # statements, which the formatter does not change (244 when the rule, "under 350 lines", was met)
    assert sum(isinstance(n, ast.stmt) for n in ast.walk(ast.parse(source))) < 250
    code = "\n".join(ln.split("#")[0] for ln in source.split('"""')[2].splitlines())
    for word in (
        r'"head\.',
        r"\.tconv",
        r"\.head\b",
        r"\.visual\b",
        r"\.temporal\b",
        "matching_loss",
        "cross_entropy",
        "template_for_step",
        r"\.pick\b",
        r"\.bank\b",
        r"tkvr\.model",
    ):
        assert not re.search(word, code), word


@pytest.mark.parametrize("rule", [test_nothing_imports_upwards, test_imports_sit_at_the_top_unless_said_why])
def test_the_rules_catch_a_breach(tmp_path, monkeypatch, rule):
    """A module that breaks the rule, planted in a copy of the package, is found."""
    import shutil

    copy = tmp_path / "tkvr"
    shutil.copytree(TKVR, copy, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    (copy / "data" / "bad.py").write_text("def f():\n    from tkvr.run.engine import Trainer\n")
    monkeypatch.setitem(globals(), "TKVR", copy)
    with pytest.raises(AssertionError):
        rule()
