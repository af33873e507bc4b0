"""tkvr.run.training: a run's settings resolved once, into a frozen copy that config.yaml records."""
import copy

import pytest
import yaml
from conftest import small_set

from tkvr.base.settings import Frozen
from tkvr.run.settings import TrainConfig
from tkvr.run.training import resolve_run, train

FLAGS = dict(backbone="tiny", frames=2, batch_size=8, workers=0, epochs=1, limit_batches=1, warmup=0.0,
             augment="auto", randaugment="auto")


def test_a_run_is_resolved_once_into_a_frozen_copy(tmp_path):
    cfg = TrainConfig.from_flags({**FLAGS, "data": str(small_set(tmp_path, bad=())), "out": str(tmp_path / "run")})
    before = copy.deepcopy(cfg)
    run, src = resolve_run(cfg)
    assert cfg == before  # the user's settings stay as given
    assert run.data.augment == "cpu" and run.data.randaugment in ("off", "frame", "clip")  # auto resolved
    assert run.data.fold == 1 and run.model.templates == list(src.templates)
    assert run.device.precision == "32-true"
    with pytest.raises(Frozen):
        run.model.frames = 4
    with pytest.raises(Frozen):
        run.data.augment = "device"
    cfg.model.frames = 3  # the user's own object is not frozen


def test_training_changes_no_setting_and_records_the_resolved_ones(tmp_path):
    """Every layer runs on the frozen settings: a write anywhere in training would raise Frozen."""
    data = small_set(tmp_path, bad=())  # 3 clips: the run is about settings, not learning
    cfg = TrainConfig.from_flags({**FLAGS, "batch_size": 2, "data": str(data), "out": str(tmp_path / "run")})
    before = copy.deepcopy(cfg)
    train(cfg)
    assert cfg == before
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["data"]["augment"] == "cpu"  # --augment auto, as it ran
    assert recorded["data"]["randaugment"] != "auto"
    assert recorded["device"]["precision"] == "32-true"  # --precision auto on a CPU
    assert recorded["data"]["data"] == str(data.resolve())  # an absolute path
    assert recorded["data"]["fold"] == 1 and len(recorded["model"]["templates"]) >= 1


def test_scripts_meet_the_command_lines_refusals():
    with pytest.raises(Exception, match="--augment 'gpu'"):
        TrainConfig.from_flags({"augment": "gpu"})
    with pytest.raises(Exception, match="--frames must be >= 1"):
        TrainConfig.from_flags({"frames": 0})


def test_more_frames_than_a_clip_has_is_said(run_cli, tmp_path):
    data = small_set(tmp_path, bad=())  # 8-frame clips
    args = ["train", "--data", data, "--backbone", "tiny", "--batch-size", "2", "--workers", "0", "--epochs", "1",
            "--warmup", "0", "--max-steps", "1"]
    code, out, err = run_cli(*args, "--frames", "12", "--out", tmp_path / "a")
    assert code == 0, err
    assert "has 8 frames and --frames is 12: frames repeat within each clip" in out
    code, out, err = run_cli(*args, "--frames", "8", "--out", tmp_path / "b")
    assert code == 0 and "frames repeat" not in out
