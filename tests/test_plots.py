"""tkvr plot: Figures 1, 3 and 4 from tiny runs; the numbers drawn are checked against the files."""
import csv
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_user_error, assert_wrote, fast, tkvr

FAST = fast(data="toy", lr="1e-4", epochs=1, limit_batches=3, log_every=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    for head in ("text", "learned"):
        for frac in ("0.5", "1"):
            code, _, err = tkvr("train", *FAST, "--head", head, "--label-fraction", frac,
                                "--out", root / "lf" / f"{head}_{frac}")
            assert code == 0, err
    return root


def test_plot_fractions_and_loss(run_cli, runs):
    pytest.importorskip("matplotlib")
    code, out, err = run_cli("plot", "fractions", runs / "lf", "--out", runs / "fractions.png")
    assert code == 0, err
    assert_wrote(out, runs / "fractions.png")
    assert (runs / "fractions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tkvr.run.plots import plot_fractions, plot_loss

    curves = plot_fractions([str(runs / "lf")], runs / "fractions.svg")
    assert "<svg" in (runs / "fractions.svg").read_text()[:400]
    assert set(curves) == {"text", "learned"}
    for head, points in curves.items():
        assert [p[0] for p in points] == [0.5, 1.0]
        for frac, top1, std, n in points:
            run = runs / "lf" / f"{head}_{frac:g}"
            assert top1 == json.loads((run / "report.json").read_text())["final"]["top1"] and n == 1 and std == 0
    code, _, err = run_cli("plot", "loss", runs / "lf" / "text_1", runs / "lf" / "learned_1", "--out", runs / "loss.png")
    assert code == 0, err
    curves = plot_loss([str(runs / "lf" / "text_1"), str(runs / "lf" / "learned_1")], runs / "loss.png")
    rows = list(csv.DictReader((runs / "lf" / "learned_1" / "steps.csv").open()))
    assert curves["learned_1 (learned head)"] == [(int(r["step"]), float(r["loss"])) for r in rows]
    assert len(curves["text_1 (text head)"]) == 3


def test_plot_correlation_of_a_learned_head_and_of_an_embeddings_file(run_cli, runs, tmp_path):
    pytest.importorskip("matplotlib")
    from tkvr.run.plots import head_of, plot_correlation

    run = runs / "lf" / "learned_1"
    code, out, err = run_cli("plot", "correlation", run, "--out", runs / "corr_learned.png")
    assert code == 0, err
    w = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]["head.weight"]
    weight, classes, title = head_of(str(run))
    sim = plot_correlation(weight, classes, tmp_path / "c.png", title)
    n = F.normalize(w, dim=-1)
    torch.testing.assert_close(sim, n @ n.T)  # cosines of the trained rows: the paper's right panel
    assert "learned head" in title and len(classes) == 54
    code, _, err = run_cli("embed", "--classes", ",".join(classes[:8]), "--backbone", "tiny", "--out", tmp_path / "e.pt")
    assert code == 0, err
    code, _, err = run_cli("plot", "correlation", tmp_path / "e.pt", "--out", tmp_path / "e.svg")
    assert code == 0, err
    assert "<svg" in (tmp_path / "e.svg").read_text()[:400]


@pytest.mark.parametrize("args,words", [
    (["plot", "loss", "{tmp}/nowhere", "--out", "{tmp}/a.png"], ["nowhere", "not a finished run"]),
    (["plot", "correlation", "{tmp}/a", "{tmp}/b", "{tmp}/c", "--out", "{tmp}/a.png"], ["one head, or two side by side"]),
    (["plot", "loss", "{tmp}/a", "--pick", "20", "--out", "{tmp}/a.png"], ["--pick", "correlation"]),
    (["plot", "correlation", "{tmp}/a", "--pick", "1", "--out", "{tmp}/a.png"], ["--pick 1", "2 or more"]),
    (["plot", "loss", "{tmp}", "--out", "{tmp}/a.jpg"], ["--out", ".png, .svg or .pdf"]),
    (["plot", "--out", "{tmp}/a.png"], ["choose correlation, fractions, loss or accuracy"]),
])
def test_plot_mistakes(run_cli, tmp_path, args, words):
    code, _, err = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert_user_error(code, err, *words)
    assert not (tmp_path / "a.png").exists()


def test_plot_accuracy_draws_each_runs_validated_epochs(run_cli, runs, tmp_path):
    pytest.importorskip("matplotlib")
    import shutil

    from tkvr.run.plots import plot_accuracy

    going = tmp_path / "going"  # a run still training: no report.json yet, a row not validated
    shutil.copytree(runs / "lf" / "text_1", going)
    (going / "report.json").unlink()
    head, row = (going / "metrics.csv").read_text().splitlines()
    cells = row.split(",")
    later = [cells[:]] + [[str(e), *cells[1:]] for e in (2, 3)]
    later[1][3:6] = ["", "", ""]  # epoch 2 not validated (--eval-every 2)
    (going / "metrics.csv").write_text("\n".join([head, *(",".join(c) for c in later)]) + "\n")
    code, out, err = run_cli("plot", "accuracy", runs / "lf" / "learned_1", going, "--out", tmp_path / "acc.png")
    assert code == 0, err
    assert_wrote(out, tmp_path / "acc.png")
    curves = plot_accuracy([str(runs / "lf" / "learned_1"), str(going)], tmp_path / "acc.svg")
    top1 = float(cells[3])
    assert curves["going (text head)"] == [(1, top1), (3, top1)]
    report = json.loads((runs / "lf" / "learned_1" / "report.json").read_text())
    assert curves["learned_1 (learned head)"] == [(1, report["history"][0]["val_top1"])]
    code, _, err = run_cli("plot", "accuracy", tmp_path / "acc.png", "--out", tmp_path / "x.png")
    assert_user_error(code, err, "acc.png", "no metrics.csv")


def test_timeline_legend_and_segment_band_stay_off_the_curves(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from tkvr.run import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: (fig.canvas.draw(), drawn.append(fig)))
    windows = [{"start": t, "end": t + 1.0, "labels": ["a", "b"], "scores": [0.97, 0.02]} for t in range(6)]
    windows += [{"start": t, "end": t + 1.0, "labels": ["b", "a"], "scores": [0.99, 0.0]} for t in range(6, 9)]
    segments = [{"start": 0.0, "end": 6.0, "label": "a", "score": 0.97},
                {"start": 6.0, "end": 9.0, "label": "b", "score": 0.99}]
    plots.plot_timeline([{"file": "v.mp4", "windows": windows, "segments": segments}], tmp_path / "t.png")
    ax = drawn[0].axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not over the curves
    bands = [c for c in ax.collections if len(c.get_paths())]
    assert len(bands) == 2 and all(p.get_extents().y1 < 0 for c in bands for p in c.get_paths())
    curves = [line for line in ax.get_lines() if line.get_label() in ("a", "b")]
    assert all(min(line.get_ydata()) >= 0 for line in curves) and len(curves) == 2


def test_figure1_two_panels_of_picked_classes(run_cli, tmp_path):
    """Figure 1: the same picked classes in both panels; a seeded draw repeats; names from a file
    or a list; the choice is written beside the figure; a class one head lacks is refused."""
    import torch
    from conftest import assert_user_error

    names = [f"class {i}" for i in range(30)]
    g = torch.Generator().manual_seed(0)
    for name, rows in (("text", names), ("learned", names[::-1]), ("few", names[:10])):
        torch.save({"embeddings": torch.randn(len(rows), 8, generator=g), "classes": rows, "head": name},
                   tmp_path / f"{name}.pt")
    text, learned = tmp_path / "text.pt", tmp_path / "learned.pt"

    def drawn(*args):
        code, out, err = run_cli("plot", "correlation", text, learned, *args, "--out", tmp_path / "f.png")
        assert code == 0, err
        assert f"wrote {tmp_path / 'f.classes.txt'}" in out
        return (tmp_path / "f.classes.txt").read_text().splitlines()

    first = drawn("--pick", "20")
    assert len(set(first)) == 20 and first == sorted(first, key=names.index)  # dataset order
    assert drawn("--pick", "20") == first and drawn("--pick", "20", "--seed", "1") != first
    (tmp_path / "pick.txt").write_text("class 3\nclass 7\n")
    assert drawn("--pick", str(tmp_path / "pick.txt")) == ["class 3", "class 7"]
    assert drawn("--pick", "class 9,class 2") == ["class 2", "class 9"]
    code, _, err = run_cli("plot", "correlation", text, "--pick", "class 3,nothing", "--out", tmp_path / "g.png")
    assert_user_error(code, err, "--pick", "'nothing'")
    code, _, err = run_cli("plot", "correlation", text, tmp_path / "few.pt", "--out", tmp_path / "g.png")
    assert_user_error(code, err, "few.pt", "same classes")
    from tkvr.run import plots

    panels = []
    real = plots.plot_correlations
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "plot_correlations", lambda p, *a: panels.extend(p) or real(p, *a))
        chosen = drawn("--pick", "class 3,class 7,class 20")
    rows = torch.load(learned, weights_only=True)["embeddings"]  # its classes in reverse order
    want = rows[[names[::-1].index(c) for c in chosen]]
    assert len(panels) == 2 and torch.equal(panels[1][0], want)  # the right panel: the same classes, by name
