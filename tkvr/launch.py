"""Lightning Fabric from the device settings (--accelerator, --devices, --num-nodes, --strategy,
--precision): every command that runs a model launches it here, after its checks.

CPU DDP uses the gloo backend; FSDP saves full state dicts, so checkpoints load anywhere.
"""

from __future__ import annotations

from tkvr.config import DeviceConfig
from tkvr.errors import TkvrError


def make_fabric(device: DeviceConfig):
    from lightning_fabric import Fabric
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    strategy = device.strategy
    if strategy == "fsdp":
        from lightning_fabric.strategies import FSDPStrategy

        strategy = FSDPStrategy(state_dict_type="full")
    elif strategy == "ddp" and device.accelerator == "cpu":
        from lightning_fabric.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    try:
        fabric = Fabric(accelerator=device.accelerator, devices=device.devices, num_nodes=device.num_nodes,
                        strategy=strategy, precision=device.precision)
    except (ValueError, RuntimeError, MisconfigurationException) as e:  # no such device here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TkvrError(f"--accelerator {device.accelerator} --devices {device.devices}: {first}") from None
    fabric.launch()
    return fabric
