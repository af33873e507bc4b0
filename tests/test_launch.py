"""tkvr.run.launch: Fabric across processes and nodes (torchrun, SLURM) gives the numbers of one node."""
import json

import pytest
import torch
from conftest import LIBRARY_NOISE, tkvr, tkvr_process


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_nodes(*args):
    """`torchrun --nnodes 2 --nproc-per-node 1 --node-rank R` on localhost, both nodes at once."""
    import os
    import subprocess
    import sys

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(r), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "tkvr", *map(str, args), "--num-nodes", "2", "--devices", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def slurm_two_nodes(*args):
    """Two tasks with the variables `srun` sets for an allocation of 2 nodes x 1 task (no srun
    here: the variables are what Fabric reads)."""
    import os
    import subprocess
    import sys

    port = str(free_port())
    procs = []
    for r in (0, 1):
        env = dict(os.environ, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_PROCID=str(r), SLURM_LOCALID="0",
                   SLURM_NODEID=str(r), SLURM_NODELIST="127.0.0.1", SLURM_JOB_NAME="tkvr", SLURM_JOB_ID="4321",
                   MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, "-m", "tkvr", *map(str, args), "--num-nodes", "2",
                                       "--devices", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_nodes_match_one_node_with_two_devices(tmp_path):
    common = ["--accelerator", "cpu", "--strategy", "ddp"]
    train = ["train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "0",
             "--epochs", "1", "--limit-batches", "2", "--warmup", "0", "--lr", "1e-4", *common]
    torchrun_two_nodes(*train, "--out", tmp_path / "nodes")
    code, _, err = tkvr_process(*train, "--devices", "2", "--out", tmp_path / "devices")
    assert code == 0, err[-3000:]
    slurm_two_nodes(*train, "--out", tmp_path / "slurm")
    b = torch.load(tmp_path / "devices" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for launch in ("nodes", "slurm"):
        a = torch.load(tmp_path / launch / "checkpoints" / "last.pt", weights_only=True)["model"]
        # the same steps on the same shards; only float summation order differs (threads per process)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a), launch
        losses = [(tmp_path / x / "metrics.csv").read_text().splitlines()[1].split(",")[2] for x in (launch, "devices")]
        assert losses[0] == losses[1], launch
    ev = ["eval", "--workers", "0", "--batch-size", "7", "--checkpoint", tmp_path / "nodes", *common]
    torchrun_two_nodes(*ev, "--json", tmp_path / "nodes.json")
    code, out, err = tkvr_process(*ev, "--devices", "2", "--json", tmp_path / "devices.json")
    assert code == 0, err[-3000:]
    assert not [n for n in LIBRARY_NOISE if n in out + err], out + err  # eval under DDP says only tkvr's lines
    code, _, err = tkvr(*ev, "--devices", "1", "--strategy", "auto", "--json", tmp_path / "one.json")
    assert code == 0, err
    n, d, one = (json.loads((tmp_path / f"{x}.json").read_text()) for x in ("nodes", "devices", "one"))
    # each sample scored once by 2 processes, as by 1
    assert n["num_samples"] == d["num_samples"] == one["num_samples"] == 216
    assert n["per_class"] == d["per_class"] == one["per_class"] and d["top1"] == one["top1"]
