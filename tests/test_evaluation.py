"""tkvr.run.evaluation: eval's per-class CSV, confusion plot and most confused pairs."""
import csv
import json

import pytest
import torch
from conftest import assert_wrote, fast, small_set, tkvr

from tkvr.run.evaluation import confused_pairs, per_class_csv
from tkvr.run.metrics import metrics


def test_confusion_counts_and_what_is_taken_for_what():
    # 3 classes; scores whose top-1 is the predicted class: a->a x3, a->b, b->b x2, b->c x2
    truth, guess = [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 2, 2]
    scores = torch.nn.functional.one_hot(torch.tensor(guess), 3).float()
    pred = {"label": torch.tensor(truth), "scores": scores, "bad": torch.full((8,), -1), "index": torch.arange(8)}
    m = metrics(pred, 3)
    assert m["confusion"].tolist() == [[3, 1, 0], [0, 2, 2], [0, 0, 0]]
    rows = list(csv.reader(per_class_csv(m["confusion"], ["a", "b", "c"]).splitlines()))
    assert rows == [["class", "samples", "top1", "taken_for", "taken_for_share"],
                    ["a", "4", "75.00", "b", "25.00"], ["b", "4", "50.00", "c", "50.00"], ["c", "0", "", "", ""]]
    assert confused_pairs(m["confusion"], ["a", "b", "c"]) == [
        {"true": "b", "taken_for": "c", "videos": 2, "share": 50.0},
        {"true": "a", "taken_for": "b", "videos": 1, "share": 25.0},
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on 3 clips of 2 classes."""
    tmp = tmp_path_factory.mktemp("trained")
    data = small_set(tmp, bad=())
    code, _, err = tkvr("train", "--data", data, *fast(batch_size=2, epochs=1), "--out", tmp / "run")
    assert code == 0, err
    return tmp / "run"


def test_eval_writes_the_per_class_csv_and_the_confusion_plot(run_cli, trained, tmp_path):
    code, stdout, err = run_cli("eval", "--checkpoint", trained, "--workers", "0", "--json", tmp_path / "e.json",
                                "--per-class", tmp_path / "pc.csv", "--plot", tmp_path / "confusion.png")
    assert code == 0, err
    assert_wrote(stdout, tmp_path / "pc.csv", tmp_path / "confusion.png", tmp_path / "e.json")
    report = json.loads((tmp_path / "e.json").read_text())
    rows = list(csv.DictReader((tmp_path / "pc.csv").read_text().splitlines()))
    assert [r["class"] for r in rows] == ["x", "y"]
    assert sum(int(r["samples"]) for r in rows) == report["num_samples"] == 3
    for r in rows:
        assert float(r["top1"]) == round(report["per_class"][r["class"]], 2)
    wrong = sum(round(int(r["samples"]) * float(r["taken_for_share"] or 0) / 100) for r in rows)
    assert wrong == sum(p["videos"] for p in report["confused"])  # two classes: one way to be wrong each
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_in_a_terminal(*args) -> str:
    """tkvr's output when its stdout and stderr are a (pseudo-)terminal, as a user's shell gives."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "tkvr", *map(str, args)], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        out += chunk
    proc.wait()
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_eval_shows_progress_as_a_bar_on_a_terminal_and_as_lines_in_a_pipe(run_cli, trained, tmp_path):
    shown = run_in_a_terminal("eval", "--checkpoint", trained, "--workers", "0", "--batch-size", "1")
    assert "scoring data val (1x1 views)" in shown and "3/3" in shown  # the bar, to its end
    assert "tkvr eval: loading torch and the model libraries" in shown  # start-up says what it does
    code, out, err = run_cli("eval", "--checkpoint", trained, "--workers", "0", "--batch-size", "1",
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    # a pipe (a batch job's log) gets plain lines at each tenth, no bar and no spinner
    lines = [ln for ln in out.splitlines() if ln.startswith("scoring ")]
    assert lines == [f"scoring data val (1x1 views): {n}/3" for n in (1, 2, 3)], out
    assert "\r" not in out + err and "loading" not in out + err


def test_eval_scores_the_final_weights_and_names_them(run_cli, tmp_path):
    """A run directory means checkpoints/last.pt; best.pt (picked on the split eval reports) only
    when named; the report and the table say which weights were scored."""
    import shutil

    from conftest import assert_user_error

    data = small_set(tmp_path, bad=())
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", data, *fast(batch_size=2, epochs=2), "--save-every", "1", "--out", run)
    assert code == 0, err
    ck = run / "checkpoints"
    shutil.copy(ck / "epoch_1.pt", ck / "best.pt")  # a run whose best epoch is not its last
    best, last = (torch.load(ck / n, weights_only=True)["model"] for n in ("best.pt", "last.pt"))
    assert any(not torch.equal(best[k], last[k]) for k in last)
    reports = {}
    for name, where in (("run", run), ("best", ck / "best.pt")):
        code, out, err = run_cli("eval", "--checkpoint", where, "--workers", "0", "--json", tmp_path / f"{name}.json")
        assert code == 0, err
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert f"weights: {reports[name]['weights']}" in out
    assert reports["run"]["checkpoint"] == str(ck / "last.pt")
    assert reports["run"]["weights"].startswith("last.pt: the run's final weights")
    assert reports["best"]["checkpoint"] == str(ck / "best.pt")
    assert "best validation top-1" in reports["best"]["weights"]
    (ck / "last.pt").unlink()
    code, _, err = run_cli("eval", "--checkpoint", run)
    assert_user_error(code, err, "no checkpoints/last.pt", str(ck / "best.pt"))
