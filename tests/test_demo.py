"""tkvr demo (tkvr.commands.demo): the main job runs twice in a row, each time to its table."""
import json

from conftest import assert_wrote


def test_two_demos_in_a_row_both_end_with_the_table(run_cli, tmp_path):
    out = tmp_path / "demo"
    code, first, err = run_cli("demo", "--epochs", "1", "--workers", "0", "--out", out)
    assert code == 0, err
    assert "what the toy world shows" in first and "trained 1 epoch," in first
    assert_wrote(first, out)  # one line: the demo's folder holds its runs
    kept = (out / "eval_seen.json").read_bytes()
    code, second, err = run_cli("demo", "--epochs", "1", "--workers", "0", "--out", out)
    assert code == 0, err
    assert "what the toy world shows" in second
    assert f"{out} holds an earlier demo; this one writes to {out}-2" in second
    assert (out / "eval_seen.json").read_bytes() == kept  # the first demo's results stay
    assert (tmp_path / "demo-2" / "train" / "checkpoints" / "last.pt").is_file()
    again = json.loads((tmp_path / "demo-2" / "eval_seen.json").read_text())
    assert again["top1"] == json.loads(kept)["top1"]  # the same seeds, the same numbers
