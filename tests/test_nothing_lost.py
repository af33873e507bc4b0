"""Nothing lost, every bound checked: tkvr prepare under faults and concurrent runs, a loss that
turns NaN, the unreadable-file budget, text files with a byte-order mark, and every file tkvr
reads refused in one line."""
import csv
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import assert_user_error, write_clip

FAST = ["--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "16", "--workers", "0",
        "--warmup", "0", "--limit-batches", "2", "--log-every", "1"]


# ---------------------------------------------------------------- a loss that becomes NaN
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(run_cli, tmp_path, monkeypatch):
    import types

    import torch.nn.functional as F

    import tkvr.engine

    run = tmp_path / "run"
    code, _, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "1", "--out", run)
    assert code == 0, err
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    calls = []

    def loss(logits, y):  # the resumed run's second step (step 4) diverges
        calls.append(1)
        value = F.cross_entropy(logits, y)
        return value * float("nan") if len(calls) >= 2 else value

    monkeypatch.setattr(tkvr.engine, "F", types.SimpleNamespace(cross_entropy=loss))
    code, _, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "3", "--resume", "auto", "--out", run)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "training loss became" in lines[0] and "at step 4" in lines[0] and "last good checkpoint" in lines[0]
    assert last.read_bytes() == before  # not overwritten by a model of NaNs
    steps = [int(r["step"]) for r in csv.DictReader((run / "steps.csv").open())]
    assert steps == [1, 2, 3], steps  # the step whose loss was not finite is not logged as a number


def test_precision_16_mixed_on_a_cpu_says_what_runs_and_records_it(run_cli, tmp_path):
    code, out, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "1", "--limit-batches", "1",
                             "--precision", "16-mixed", "--accelerator", "cpu", "--out", tmp_path / "r")
    assert code == 0, err
    assert "running bf16-mixed instead" in out and "lightning" not in (out + err).lower(), out + err
    import yaml

    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["device"]["precision"] == "bf16-mixed"
