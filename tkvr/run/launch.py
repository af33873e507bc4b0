"""Lightning Fabric from the device settings (--accelerator, --devices, --num-nodes, --strategy,
--precision): every command that runs a model launches it here, after its checks.

CPU DDP uses the gloo backend; FSDP saves full state dicts, so checkpoints load anywhere.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import torch
from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy, FSDPStrategy
from lightning_fabric.utilities.exceptions import MisconfigurationException

from tkvr.base.errors import TkvrError
from tkvr.base.procs import LAUNCHER
from tkvr.base.progress import last_word, say, status
from tkvr.run.settings import DeviceConfig


def _where(accelerator: str, cuda: bool, mps: bool) -> str:
    """Where --accelerator puts a model: "cuda", "cpu" or "other" (mps and the like)."""
    if cuda and accelerator in ("auto", "cuda", "gpu"):
        return "cuda"
    if accelerator == "cpu" or (accelerator == "auto" and not cuda and not mps):
        return "cpu"
    return "other"


def resolve_precision(
    setting: str,
    accelerator: str,
    cuda: bool,
    bf16: bool,
    mps: bool = False,
    cpu_bf16: bool = False,
    inference: bool = False,
) -> str:
    """--precision auto: bf16-mixed on a CUDA device that supports bf16 (as the paper trained),
    16-mixed on older CUDA devices; on a CPU, bf16-mixed for inference where the CPU computes bf16
    natively (`cpu_bf16`), else 32-true (training on a CPU keeps float32 unless asked); 32-true
    elsewhere. Any other value as given.

    >>> [resolve_precision("auto", a, c, b) for a, c, b in
    ...  (("auto", True, True), ("cuda", True, False), ("auto", False, False), ("cpu", True, True))]
    ['bf16-mixed', '16-mixed', '32-true', '32-true']
    >>> [resolve_precision("auto", "cpu", False, False, cpu_bf16=n, inference=i) for n, i in
    ...  ((True, True), (True, False), (False, True))]
    ['bf16-mixed', '32-true', '32-true']
    >>> resolve_precision("16-mixed", "cpu", True, True)
    'bf16-mixed'
    """
    where = _where(accelerator, cuda, mps)
    if setting == "16-mixed" and where == "cpu":
        return "bf16-mixed"  # CPUs have no float16 autocast; Lightning would switch it with a warning
    if setting != "auto":
        return setting
    if where == "cuda":
        return "bf16-mixed" if bf16 else "16-mixed"
    if where == "cpu" and inference and cpu_bf16:
        return "bf16-mixed"
    return "32-true"


def native_bf16() -> str | None:
    """The unit with which this CPU computes bf16, as torch's own checks see it (its oneDNN
    kernels use them): "AMX", "AVX512-BF16", or None (elsewhere bf16 is emulated: slower than
    float32, so auto keeps float32)."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def resolution(device: DeviceConfig, inference: bool = False) -> tuple[str, str]:
    """(what `device.precision` becomes on this machine, why in words: what a plan and a report
    show); `inference`: for scoring only (eval, predict, zeroshot --no-train), where auto may
    pick bf16 on a CPU."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    unit = native_bf16()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    here = resolve_precision(
        device.precision, device.accelerator, cuda, bf16, mps, unit is not None, inference
    )
    where = _where(device.accelerator, cuda, mps)
    if device.precision != "auto":
        why = "as given" if here == device.precision else "16-mixed asked: a CPU has no float16 autocast"
    elif where == "cuda":
        why = f"auto: a CUDA device {'with' if bf16 else 'without'} bf16"
    elif where != "cpu":
        why = "auto: float32 on this device"
    elif not inference:
        why = "auto: training off CUDA keeps float32"
    elif unit:
        why = f"auto: this CPU computes bf16 natively ({unit}); --precision 32-true for float32"
    else:
        why = "auto: this CPU has no native bf16 (AVX512-BF16 or AMX)"
    return here, why


def precision_here(device: DeviceConfig, say_why: bool = False, inference: bool = False) -> str:
    """What `device.precision` becomes on this machine (a run resolves it once and records it)."""
    here = resolution(device, inference)[0]
    if say_why and device.precision == "16-mixed" and here != device.precision:
        say(
            "--precision 16-mixed: a CPU has no float16 autocast; running bf16-mixed instead "
            "(recorded in the run)"
        )
    return here


def make_fabric(device: DeviceConfig, inference: bool = False):
    """Launch Fabric at the precision `device` resolves to here (its settings are not changed);
    `inference`: a model that only scores (see precision_here)."""
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
            precision=precision_here(device, say_why=True, inference=inference),
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
