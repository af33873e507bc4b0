"""--logger: the values each tracker holds, read back with its own reader, are the run's CSV logs."""
import json
import struct

import pytest
import yaml
from conftest import assert_user_error, fast


def wandb_records(path):
    """The records of a W&B run file (offline-run-*/run-ID.wandb), parsed with W&B's own protobuf
    schema. The file is W&B's transaction log: a 7-byte header (':W&B', magic, version), then
    LevelDB log blocks of 32 KiB whose chunks carry crc32 (4 bytes), length (2) and type (1: a
    whole record, 2 its first part, 3 a middle one, 4 its last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, part = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (n == 0 and kind == 0):  # the end of a block: padding
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(part)
            yield r


def items(entries) -> dict:
    """W&B's key-value entries: a key with '/' comes as nested_key parts."""
    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def logged(rows, name):
    """{step: value} of one metric from a list of {key: value} rows with a step key."""
    return {int(r["_step"]): float(r[name]) for r in rows if name in r}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    import os

    from conftest import tkvr

    out = tmp_path_factory.mktemp("trackers") / "run"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_TRACKING_URI": ""}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        code, _, err = tkvr("train", *fast(data="toy", epochs=2, limit_batches=3, log_every=1),
                            "--logger", "wandb,mlflow", "--logger", "tensorboard", "--out", out)
    finally:
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert code == 0, err
    return out


def csv_logs(out):
    from tkvr.run.logs import EPOCH_COLUMNS, STEP_COLUMNS, read_log

    return read_log(out / "metrics.csv", EPOCH_COLUMNS), read_log(out / "steps.csv", STEP_COLUMNS)


def test_every_tracker_holds_the_csv_logs(tracked):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    epochs, steps = csv_logs(tracked)
    assert len(epochs) == 2 and len(steps) == 6
    want = {
        "epoch/val_top1": {r["step"]: r["val_top1"] for r in epochs},
        "epoch/train_loss": {r["step"]: r["train_loss"] for r in epochs},
        "train/loss": {r["step"]: r["loss"] for r in steps},
        "train/lr": {r["step"]: r["lr"] for r in steps},
    }
    ids = json.loads((tracked / "trackers.json").read_text())
    # W&B (offline): the run file's history records
    (run_file,) = tracked.glob(f"wandb/offline-run-*-{ids['wandb']}/run-{ids['wandb']}.wandb")
    records = list(wandb_records(run_file))
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    (config,) = [items(r.run.config.update) for r in records if r.WhichOneof("record_type") == "run"]
    summary = {k: v for r in records if r.WhichOneof("record_type") == "summary"
               for k, v in items(r.summary.update).items()}
    # MLflow: its own client on the SQLite store in the run folder
    client = MlflowClient(tracking_uri=ids["mlflow"]["uri"])
    run = client.get_run(ids["mlflow"]["run_id"])
    # TensorBoard: its event reader
    board = EventAccumulator(str(tracked / "tensorboard"))
    board.Reload()
    for name, values in want.items():
        got = {
            "wandb": logged(history, name),
            "mlflow": {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)},
            "tensorboard": {e.step: e.value for e in board.Scalars(name)},
        }
        for tracker, series in got.items():
            assert series.keys() == values.keys(), (tracker, name, series)
            for step, v in values.items():  # the CSV keeps 6 digits, TensorBoard float32
                assert series[step] == pytest.approx(v, rel=1e-5), (tracker, name, step)
    # the config, flattened, and the final report
    cfg = yaml.safe_load((tracked / "config.yaml").read_text())
    assert float(run.data.params["optim.lr"]) == cfg["optim"]["lr"]
    assert config["optim.lr"] == cfg["optim"]["lr"]
    assert config["model.backbone"] == run.data.params["model.backbone"] == "tiny"
    report = json.loads((tracked / "report.json").read_text())
    assert summary["final/top1"] == run.data.metrics["final/top1"] == report["final"]["top1"]
    assert run.info.status == "FINISHED"


def test_a_tracker_whose_package_is_missing_is_one_line(run_cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code, _, err = run_cli("train", *fast(data="toy"), "--logger", "wandb", "--out", tmp_path / "r")
    assert_user_error(code, err, "--logger wandb needs its package: pip install 'tkvr[wandb]'")
    code, _, err = run_cli("train", *fast(data="toy"), "--logger", "neptune", "--out", tmp_path / "r")
    assert_user_error(code, err, "--logger neptune: not a logger; use csv, tensorboard, wandb or mlflow")
    assert not (tmp_path / "r").exists()
