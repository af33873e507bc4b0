"""Lightning Fabric from the device settings (--accelerator, --devices, --num-nodes, --strategy,
--precision): every command that runs a model launches it here, after its checks.

CPU DDP uses the gloo backend; FSDP saves full state dicts, so checkpoints load anywhere.
"""

from __future__ import annotations

from tkvr.config import DeviceConfig


def make_fabric(device: DeviceConfig):
    from lightning_fabric import Fabric

    strategy = device.strategy
    if strategy == "fsdp":
        from lightning_fabric.strategies import FSDPStrategy

        strategy = FSDPStrategy(state_dict_type="full")
    elif strategy == "ddp" and device.accelerator == "cpu":
        from lightning_fabric.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    fabric = Fabric(accelerator=device.accelerator, devices=device.devices, num_nodes=device.num_nodes,
                    strategy=strategy, precision=device.precision)
    fabric.launch()
    return fabric
