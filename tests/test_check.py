"""tkvr check (tkvr.data.check): every sample read as training reads it."""
import json

from conftest import (
    assert_wrote,
    list_dataset,
    write_divx_avi,
)


def test_check_reads_the_last_frame(run_cli, tmp_path):
    """check reads what training reads: a file whose end is damaged fails check."""
    data = list_dataset(tmp_path, {"a.avi": "x", "b.avi": "y"})
    write_divx_avi(data / "a.avi", frames=10)
    write_divx_avi(data / "b.avi", frames=10)
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    assert code == 0, out + err
    assert_wrote(out, tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["unreadable"] == []
    raw = (data / "b.avi").read_bytes()
    (data / "b.avi").write_bytes(raw[: len(raw) * 2 // 3])  # the last third is gone
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    report = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and report["unreadable"] == [str(data / "b.avi")], out
