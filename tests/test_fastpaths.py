"""The fast paths behind flags: attention through SDPA (training mode too), gradient
checkpointing, torch.compile, fused AdamW selection. Correctness only; speed is in benchmarks/."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tkvr.model.backbones import build_backbone
from tkvr.model.heads import Head, random_matrix
from tkvr.model.settings import ModelConfig
from tkvr.model.video_model import build_model


class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("train", [True, False])
def test_open_clip_attention_goes_through_sdpa(train):
    bb = build_backbone("tiny")
    model = build_model(bb, ModelConfig(temporal="tap", frames=2), Head(random_matrix(3, bb.dim), "random"))
    model.train(train)
    x = torch.randn(2, 2, 3, 32, 32)
    with Ops() as ops:
        out = model(x)
        if train:
            out.sum().backward()
    assert any("scaled_dot_product" in n for n in ops.names), sorted(ops.names)


def test_gradient_checkpointing_gives_the_same_gradients():
    x, y = torch.randn(2, 2, 3, 32, 32), torch.tensor([0, 2])
    grads = []
    for ckpt in (False, True):
        bb = build_backbone("tiny")
        model = build_model(bb, ModelConfig(temporal="tap", frames=2), Head(random_matrix(3, bb.dim), "random"))
        model.visual.set_grad_checkpointing(ckpt)
        model.train()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model.visual.conv1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
