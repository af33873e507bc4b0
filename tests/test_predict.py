"""tkvr predict (tkvr.run.predict)."""
import json

from conftest import (
    TINY_RUN,
    write_clip,
)


def test_predict_says_when_files_did_not_read(run_cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *TINY_RUN, "--limit-batches", "1", "--out", run)
    assert code == 0, err
    good = write_clip(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    code, out, err = run_cli("predict", good, tmp_path / "bad.mp4", "--checkpoint", run, "--json", tmp_path / "p.json")
    assert code == 1 and err.strip().splitlines() == [
        f"tkvr: error: 1 of 2 files could not be read (e.g. {tmp_path / 'bad.mp4'})"], err
    preds = json.loads((tmp_path / "p.json").read_text())
    assert len(preds[0]["labels"]) == 5 and "error" in preds[1]  # the readable file still got its labels
