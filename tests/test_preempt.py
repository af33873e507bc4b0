"""Preemption: SIGTERM (or SLURM's early SIGUSR1) stops a run at its next step with a checkpoint
of that step; `--resume auto` ends it with the weights of a run never stopped."""
import json
import os
import signal
import subprocess
import sys
import time

import torch
from conftest import alive, descendants, fast


def weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_sigterm_mid_epoch_stops_at_the_step_and_resume_ends_bit_exact(run_cli, tmp_path, monkeypatch):
    """A real SIGTERM to this process at step 3 of epoch 1 (of 5 steps, a reader process): exit
    143 with the line that says how to resume; report.json interrupted; the resumed run's weights
    and logs equal an uninterrupted run's."""
    from tkvr.run import engine

    args = ["train", *fast(data="toy", epochs=2, limit_batches=5, limit_val_batches=1, log_every=1, workers=1)]
    code, _, err = run_cli(*args, "--out", tmp_path / "whole")
    assert code == 0, err
    real = engine.Trainer.optimizer_step

    def step_then_sigterm(self):
        real(self)
        if self.step == 3:
            signal.raise_signal(signal.SIGTERM)  # what a scheduler sends; the handler only notes it

    monkeypatch.setattr(engine.Trainer, "optimizer_step", step_then_sigterm)
    run = tmp_path / "stopped"
    code, _, err = run_cli(*args, "--out", run)
    assert code == 143, err
    assert err.strip().splitlines()[-1] == (
        f"tkvr: stopped by SIGTERM at step 3 (epoch 1, batch 3 of 5); its checkpoint is written: "
        f"continue with tkvr train --out {run} --resume auto")
    report = json.loads((run / "report.json").read_text())
    assert report["interrupted"] is True and report["steps"] == 3
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["partial_epoch"]["position"] == 3
    monkeypatch.setattr(engine.Trainer, "optimizer_step", real)
    code, out, err = run_cli("train", "--out", run, "--resume", "auto")
    assert code == 0, err
    assert "epoch 1 goes on after batch 3" in out
    a, b = weights(tmp_path / "whole"), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # every step and epoch once, the same numbers (epoch, step, losses, lr, validation; not the speeds)
    for log, columns in (("metrics.csv", 7), ("steps.csv", 4)):
        whole = [r.split(",")[:columns] for r in (tmp_path / "whole" / log).read_text().splitlines()]
        again = [r.split(",")[:columns] for r in (run / log).read_text().splitlines()]
        assert whole == again, log


def slurm_tasks(args, port):
    """Two tasks with the variables `srun` sets for 2 nodes x 1 task (as tests/test_launch.py)."""
    procs = []
    for r in (0, 1):
        env = dict(os.environ, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_PROCID=str(r), SLURM_LOCALID="0",
                   SLURM_NODEID=str(r), SLURM_NODELIST="127.0.0.1", SLURM_JOB_NAME="tkvr", SLURM_JOB_ID="4321",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "tkvr", *map(str, args), "--num-nodes", "2",
                                       "--devices", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    return procs


def test_sigusr1_to_one_slurm_task_stops_both_at_one_step(tmp_path):
    """SLURM's early signal reaching one task: both stop at the same step (they agree at each
    step), exit 138, rank 0 writes the checkpoint; nothing is left running; the resumed tasks end."""
    from test_launch import free_port

    run = tmp_path / "run"
    args = ["train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "0",
            "--epochs", "1", "--limit-batches", "40", "--warmup", "0", "--log-every", "1", "--limit-val-batches",
            "1", "--accelerator", "cpu", "--strategy", "ddp", "--out", run]
    procs = slurm_tasks(args, free_port())
    deadline = time.time() + 300
    while time.time() < deadline and all(p.poll() is None for p in procs):
        rows = (run / "steps.csv").read_text().splitlines() if (run / "steps.csv").is_file() else []
        if len(rows) >= 3:  # two steps done: training is under way on both tasks
            break
        time.sleep(0.1)
    below = [c for p in procs for c in descendants(p.pid)] + [p.pid for p in procs]
    procs[1].send_signal(signal.SIGUSR1)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [138, 138], [e[-2000:] for _, e in outs]
    said = [x for x in outs[0][1].splitlines() if x.startswith("tkvr: stopped by SIGUSR1 at step ")]
    assert len(said) == 1 and "continue with tkvr train --out" in said[0], outs[0][1][-2000:]
    step = int(said[0].split(" at step ")[1].split()[0])
    assert 2 <= step < 40
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == step and ckpt["partial_epoch"]["position"] == step
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(c) for c in below):
        time.sleep(0.1)
    assert not [c for c in below if alive(c)]
    procs = slurm_tasks([*args, "--resume", "auto"], free_port())
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    report = json.loads((run / "report.json").read_text())
    assert report["steps"] == 40 and "interrupted" not in report
