"""Lightning Fabric from the device settings (--accelerator, --devices, --num-nodes, --strategy,
--precision): every command that runs a model launches it here, after its checks.

CPU DDP uses the gloo backend; FSDP saves full state dicts, so checkpoints load anywhere.
"""

from __future__ import annotations

import torch
from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy, FSDPStrategy
from lightning_fabric.utilities.exceptions import MisconfigurationException

from tkvr.base.config import DeviceConfig
from tkvr.base.errors import TkvrError
from tkvr.base.progress import say, status


def resolve_precision(setting: str, accelerator: str, cuda: bool, bf16: bool, mps: bool = False) -> str:
    """--precision auto: bf16-mixed on a CUDA device that supports bf16 (as the paper trained),
    16-mixed on older CUDA devices, 32-true on CPU and elsewhere; any other value as given.

    >>> [resolve_precision("auto", a, c, b) for a, c, b in
    ...  (("auto", True, True), ("cuda", True, False), ("auto", False, False), ("cpu", True, True))]
    ['bf16-mixed', '16-mixed', '32-true', '32-true']
    >>> resolve_precision("16-mixed", "cpu", True, True)
    'bf16-mixed'
    """
    on_cuda = cuda and accelerator in ("auto", "cuda", "gpu")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not cuda and not mps)
    if setting == "16-mixed" and on_cpu:
        return "bf16-mixed"  # CPUs have no float16 autocast; Lightning would switch it with a warning
    if setting != "auto":
        return setting
    if on_cuda:
        return "bf16-mixed" if bf16 else "16-mixed"
    return "32-true"


def precision_here(device: DeviceConfig, say_why: bool = False) -> str:
    """What `device.precision` becomes on this machine (a run resolves it once and records it)."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    here = resolve_precision(
        device.precision, device.accelerator, cuda, cuda and torch.cuda.is_bf16_supported(), mps
    )
    if say_why and device.precision == "16-mixed" and here != device.precision:
        say(
            "--precision 16-mixed: a CPU has no float16 autocast; running bf16-mixed instead "
            "(recorded in the run)"
        )
    return here


def make_fabric(device: DeviceConfig):
    """Launch Fabric at the precision `device` resolves to here (its settings are not changed)."""
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
            precision=precision_here(device, say_why=True),
        )
    except (ValueError, RuntimeError, MisconfigurationException) as e:  # no such device here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TkvrError(f"--accelerator {device.accelerator} --devices {device.devices}: {first}") from None
    with status(f"launching {device.devices} x {device.num_nodes} process(es) ({device.accelerator})"):
        fabric.launch()
    return fabric
