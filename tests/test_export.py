"""tkvr export (tkvr.run.export): ONNX and torch.export files that give tkvr's logits, a sidecar
that says how to feed them, and a runner that needs neither tkvr nor torch."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_wrote, fast, tkvr

from tkvr.data.specs import resolve
from tkvr.data.transforms import input_size
from tkvr.model.video_model import preprocess_of
from tkvr.run.checkpoint import load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A run of the toy CLIP after one small step: still the pre-trained model's confident labels."""
    run = tmp_path_factory.mktemp("export") / "run"
    code, _, err = tkvr("train", *fast(data="toy", backbone="toy", frames=4, batch_size=4, epochs=1, limit_batches=1,
                                       lr="1e-6", eval_every=2), "--out", run)
    assert code == 0, err
    return run


def test_pt2_and_onnx_give_tkvrs_logits(run_cli, toy_run, tmp_path):
    _, _, model = load_model(read_checkpoint(str(toy_run)))
    model.eval()
    size = input_size(preprocess_of(model))
    x = torch.randn(3, 4, 3, size, size)  # another batch size than the export's sample
    with torch.no_grad():
        want = model(x)
    code, out, err = run_cli("export", "--checkpoint", toy_run, "--out", tmp_path / "m.pt2")
    assert code == 0, err
    assert_wrote(out, tmp_path / "m.pt2", tmp_path / "m.pt2.json")
    with torch.no_grad():
        got = torch.export.load(tmp_path / "m.pt2").module()(x)
    assert (got - want).abs().max() <= 1e-3 * want.abs().max()
    card = json.loads((tmp_path / "m.pt2.json").read_text())
    assert card["classes"] == resolve("toy").classes and card["frames"] == 4 and card["size"] == size
    assert card["input"]["shape"] == ["batch", 4, 3, size, size] and len(card["mean"]) == len(card["std"]) == 3
    assert card["checked"]["max_difference"] <= card["checked"]["tolerance"]

    ort = pytest.importorskip("onnxruntime", reason="the [export] extra (onnxruntime) is not installed")
    code, out, err = run_cli("export", "--checkpoint", toy_run, "--out", tmp_path / "m.onnx")
    assert code == 0, err
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"clips": x.numpy()})[0]
    assert abs(got - want.numpy()).max() <= 1e-3 * want.abs().max()

    # the runner outside tkvr labels clips as tkvr predict does
    clips = [s.path for s in resolve("toy").split("val")[::40]]
    r = subprocess.run([sys.executable, ROOT / "examples" / "run_exported.py", tmp_path / "m.onnx", *clips],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    theirs = [line.split(" ", 1)[1].split(" | ")[0].rsplit(" ", 1)[0] for line in r.stdout.splitlines()]
    code, _, err = run_cli("predict", *clips, "--checkpoint", toy_run, "--top-k", "1", "--workers", "0",
                           "--json", tmp_path / "p.json")
    assert code == 0, err
    assert theirs == [p["labels"][0] for p in json.loads((tmp_path / "p.json").read_text())]


def test_an_export_that_does_not_match_writes_nothing(run_cli, toy_run, tmp_path, monkeypatch):
    import tkvr.run.export as export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # nothing can match: the refusal path
    code, _, err = run_cli("export", "--checkpoint", toy_run, "--out", tmp_path / "m.pt2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "differ from tkvr's" in lines[0] and "nothing written" in lines[0], err
    assert list(tmp_path.iterdir()) == []
