"""tkvr.run.checkpoint: a checkpoint write that fails keeps the previous one; a run is found from
anywhere and its config reused."""
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN, small_set


@pytest.mark.parametrize("how", ["disk full", "swallowed"])
def test_checkpoint_write_fault_keeps_the_previous_one(run_cli, tmp_path, monkeypatch, how):
    """The third checkpoint write fails (epoch 2): one line, exit 1, epoch 1's checkpoint whole."""
    import errno

    from lightning_fabric import Fabric

    real, calls = Fabric.save, []

    def save(self, path, state, *a, **k):
        calls.append(path)
        if len(calls) < 3:
            return real(self, path, state, *a, **k)
        if how == "disk full":
            Path(path).write_bytes(b"PK\x03\x04 what fitted")  # a full disk takes part of the file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        # Lightning's atomic save can swallow a PermissionError: nothing written, nothing raised

    monkeypatch.setattr(Fabric, "save", save)
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *TINY_RUN, "--epochs", "2", "--limit-batches", "1", "--out", run)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "cannot write checkpoint" in lines[0], err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert not list((run / "checkpoints").glob(".*")), "a partial checkpoint was left behind"


def test_a_run_is_found_from_anywhere_and_its_config_reused(run_cli, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = small_set(tmp_path / "work", bad=())
    code, out, err = run_cli("train", "--data", "data", *TINY_RUN, "--limit-batches", "1", "--out", "run")
    assert code == 0, err
    assert "warning: --warmup 0 >= --epochs" not in out
    import yaml

    saved = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert saved["data"]["data"] == str(data)  # absolute, not as typed
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "work" / "run", "--workers", "0")
    assert code == 0, err
    # the run's own config.yaml as --config: same settings, a new folder
    code, out, err = run_cli("train", "--config", tmp_path / "work" / "run" / "config.yaml", "--out", "again",
                             "--warmup", "3")
    assert code == 0, err
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert again["model"] == saved["model"] and again["data"] == saved["data"]
    assert "warning: --warmup 3 >= --epochs 1" in out
