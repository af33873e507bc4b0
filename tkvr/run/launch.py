"""Lightning Fabric from the device settings (--accelerator, --devices, --num-nodes, --strategy,
--precision): every command that runs a model launches it here, after its checks, at the
precision tkvr.run.auto decides.

CPU DDP uses the gloo backend; FSDP saves full state dicts, so checkpoints load anywhere.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy, FSDPStrategy
from lightning_fabric.utilities.exceptions import MisconfigurationException

from tkvr.base.errors import TkvrError
from tkvr.base.procs import LAUNCHER
from tkvr.base.progress import last_word, status
from tkvr.run.auto import precision_said
from tkvr.run.settings import DeviceConfig


def make_fabric(device: DeviceConfig, inference: bool = False, tell_bf16: bool = False):
    """Launch Fabric at the precision `device` resolves to here (its settings are not changed);
    `inference`: a model that only scores (tkvr.run.auto.precision); `tell_bf16`: say so where
    auto picked bf16 on a CPU."""
    strategy = device.strategy
    if strategy == "fsdp":
        strategy = FSDPStrategy(state_dict_type="full")
    elif strategy == "ddp" and device.accelerator == "cpu":
        strategy = DDPStrategy(process_group_backend="gloo")
    try:
        fabric = Fabric(
            accelerator=device.accelerator,
            devices=device.devices,
            num_nodes=device.num_nodes,
            strategy=strategy,
            precision=precision_said(device, inference, tell_bf16),
        )
    except (ValueError, RuntimeError, MisconfigurationException) as e:  # no such device here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TkvrError(f"--accelerator {device.accelerator} --devices {device.devices}: {first}") from None
    if not os.environ.get("LOCAL_RANK"):  # the ranks Lightning starts now watch this process
        os.environ[LAUNCHER] = str(os.getpid())
    with status(f"launching {device.devices} x {device.num_nodes} process(es) ({device.accelerator})"):
        fabric.launch()
    if fabric.world_size > 1 and fabric.global_rank == 0:
        watch_peers()
    return fabric


class _PeerDied(logging.Handler):
    """Lightning's launcher kills the whole run (rank 0 included, SIGKILL: exit 137) when one of
    the processes it started ends with an error, and says so only in a debug log. This says it
    on stderr first, in one line: which rank, its pid and how it ended."""

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"rank: (\d+)\].*PID (\d+) terminated with code (-?\d+)", record.getMessage())
        if m:
            rank, pid, code = m.groups()
            how = f"killed by signal {-int(code)}" if int(code) < 0 else f"exit code {code}"
            word = last_word(os.getpid(), int(rank))
            if word.is_file():
                how += ": " + word.read_text().strip()
                word.unlink(missing_ok=True)
            sys.stderr.write(
                f"tkvr: error: the process of rank {rank} (pid {pid}) ended ({how}); "
                "stopping the run (the last checkpoint is kept: continue with --resume auto)\n"
            )
            sys.stderr.flush()


def watch_peers() -> None:
    log = logging.getLogger("lightning_fabric.strategies.launchers.subprocess_script")
    if not any(isinstance(h, _PeerDied) for h in log.handlers):
        log.addHandler(_PeerDied(logging.INFO))
    log.setLevel(logging.INFO)
    log.propagate = False  # its other lines stay as quiet as the rest of Lightning's
