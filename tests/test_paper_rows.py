"""docs/paper.md conforms: every section's first command, with the data replaced by a stand-in of
the same format and the backbone by `tiny`, resolves under --dry-run to the section's settings
table. A default that drifts from the documented paper setting fails here."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "paper.md"
DRY = ("train", "fewshot", "zeroshot", "eval")  # the commands with --dry-run
SKIP = {"backbone"}  # substituted: tiny stands in for every backbone


def sections() -> list[tuple[str, list[list[str]], dict]]:
    """(title, commands of the first bash block, {setting: value}) for every section with a table."""
    out = []
    for part in re.split(r"\n## ", DOC.read_text())[1:]:
        title = part.splitlines()[0]
        block = re.search(r"```bash\n(.*?)```", part, re.S)
        rows = re.findall(r"^\| (\w+) \| (.*?) \| .* \|$", part, re.M)
        if not block or not rows:
            continue
        cmds = [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("tkvr ")]
        table = {k: value(v) for k, v in rows if k not in ("setting",)}
        out.append((title, cmds, table))
    return out


def value(cell: str):
    """A table cell as YAML, except words YAML 1.1 reads as booleans (off, on, yes, no)."""
    v = yaml.safe_load(cell)
    return cell if isinstance(v, bool) and cell not in ("true", "false") else v


ROWS = sections()


def test_every_paper_row_is_documented():
    titles = [t for t, _, _ in ROWS]
    for n in range(1, 13):
        assert any(t.startswith(f"Table {n}:") for t in titles), n
    readme = (DOC.parents[1] / "README.md").read_text()
    for n in list(range(1, 13)):
        assert f"| Table {n} |" in readme, n  # the README's table points at each row
    assert "docs/paper.md" in readme


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """A data root with UCF-101, HMDB-51 and image-folder layouts (lists only: --dry-run reads no
    video), and a tiny run for the eval rows."""
    root = tmp_path_factory.mktemp("data")
    lists = root / "ucf101" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("".join(f"{c}/v_{c}_g0{i}_c01.avi {y}\n" for y, c in
                                                   ((1, "ApplyEyeMakeup"), (2, "Archery")) for i in range(1, 6)))
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi\nArchery/v_Archery_g09_c01.avi\n")
    splits = root / "hmdb51" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c in ("brush_hair", "cartwheel"):
        (splits / f"{c}_test_split1.txt").write_text("".join(f"{c}_{i}.avi {1 if i < 5 else 2}\n" for i in range(7)))
    for split in ("train", "val"):
        for c in ("cat", "dog", "owl"):
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(16):  # Table 10 draws up to 16 shots
                (d / f"{i}.JPEG").write_bytes(b"")
    (root / "seen.txt").write_text("cat\ndog\n")
    (root / "unseen.txt").write_text("owl\n")
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tkvr.cli import main

    out = tmp_path_factory.mktemp("run") / "r"
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "0",
              "--epochs", "1", "--limit-batches", "1", "--warmup", "0", "--out", str(out)])
    assert e.value.code == 0
    return out


def substitute(cmd: list[str], root: Path, run: Path, tmp: Path) -> list[str]:
    """`tkvr NAME FLAGS` -> [NAME, FLAGS]: only the data and the backbone change (and where files
    go); every other flag stays as documented."""
    data = {"k400": "toy", "K300": "toy@seen", "K100": "toy@unseen", "IN600": f"{root}/imagenet@{root}/seen.txt",
            "IN400": f"{root}/imagenet@{root}/unseen.txt"}
    swap = {"--data-root": lambda v: str(root), "--backbone": lambda v: "tiny", "--checkpoint": lambda v: str(run),
            "--out": lambda v: str(tmp / Path(v).name), "--json": lambda v: str(tmp / Path(v).name),
            **{f: lambda v: data.get(v, v) for f in ("--data", "--train", "--eval")}}
    out, rest = [cmd[1]], cmd[2:]
    while rest:
        flag = rest.pop(0)
        if flag == "--pretrained":
            rest.pop(0)
        elif flag in swap:
            out += [flag, swap[flag](rest.pop(0))]
        else:
            out.append(flag)
    return out


def flat(plan: dict) -> dict:
    """The resolved settings by name; a command's own section (fewshot, zeroshot, eval) wins."""
    out = {}
    for group in ("model", "data", "optim", "run", "device", "auto", "fewshot", "zeroshot", "eval"):
        for k, v in (plan.get(group) or {}).items():
            if not isinstance(v, dict):
                out[k] = v
    return out


def resolved(run_cli, cmd: list[str]) -> dict:
    code, stdout, err = run_cli(*cmd, "--dry-run")
    assert code == 0, (cmd, err)
    return yaml.safe_load(stdout)


@pytest.mark.parametrize("title", [t for t, cmds, _ in ROWS if cmds and cmds[0][1] in DRY])
def test_row_resolves_to_its_settings_table(title, run_cli, stand_ins, tiny_run, tmp_path):
    _, cmds, table = next(r for r in ROWS if r[0] == title)
    got = flat(resolved(run_cli, substitute(cmds[0], stand_ins, tiny_run, tmp_path)))
    evals = [c for c in cmds[1:] if c[1] == "eval"]
    if evals:  # the row's eval; its checkpoint is a stand-in: only what eval itself decides counts
        got.update(resolved(run_cli, substitute(evals[0], stand_ins, tiny_run, tmp_path))["eval"])
    for key, want in table.items():
        if key in SKIP:
            continue
        assert key in got, (title, key)
        if isinstance(want, float):
            assert got[key] == pytest.approx(want, abs=1e-4), (title, key, got[key])
        else:
            assert got[key] == want, (title, key, got[key], want)


def toy_form(cmd: list[str]) -> list[str]:
    """A row's command on the toy world (docs/paper.md, "Toy forms"): the toy data (seen and unseen
    classes for zero-shot), the toy recipe in place of the backbone, one process, no data root."""
    out, args = [cmd[0], cmd[1]], iter(cmd[2:])
    for a in args:
        if a in ("--data-root", "--backbone", "--devices"):
            next(args)
        elif a == "--data":
            out += ["--data", "toy"] if next(args) else []
        elif a in ("--train", "--eval"):
            out += [a, "toy@seen" if a == "--train" else "toy@unseen"]
            next(args)
        elif a == "--out":
            out += ["--out", next(args).replace("runs/", "runs/toy_")]
        else:
            out.append(a)
    return out + ["--recipe", "toy"]


TOY_ROWS = [(t, cmds[0]) for t, cmds, _ in ROWS if cmds and cmds[0][1] in ("train", "fewshot", "zeroshot")]


def test_the_toy_forms_in_the_doc_are_the_rule_applied_to_each_row():
    listed = re.search(r"## Toy forms\n.*?```bash\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert [shlex.split(ln) for ln in listed.splitlines() if ln.startswith("tkvr ")] == [
        toy_form(c) for _, c in TOY_ROWS]


@pytest.mark.parametrize("title, cmd", TOY_ROWS, ids=[t.split(":")[0] for t, _ in TOY_ROWS])
def test_every_toy_form_runs(run_cli, tmp_path, title, cmd):
    args = [a.replace("runs/", f"{tmp_path}/") for a in toy_form(cmd)]
    code, out, err = run_cli(*args[1:], "--dry-run")
    assert code == 0, (title, err)
    plan = yaml.safe_load(out[out.index("model:"):])
    assert plan["model"]["backbone"] == "toy" and plan["run"]["recipe"] == "toy"
