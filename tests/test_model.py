import math

import pytest
import torch
import torch.nn.functional as F

from tkvr.base.errors import TkvrError
from tkvr.model.backbones import build_backbone
from tkvr.model.heads import Head, random_matrix
from tkvr.model.settings import ModelConfig
from tkvr.model.video_model import build_model


def clips(backbone, b=2, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = backbone.image_size
    return torch.randn(b, t, 3, s, s, generator=g)  # [B, T, C, H, W]


CASES = [("tiny", "tap"), ("tiny", "t-trans"), ("tiny", "token-t1d"), ("tiny-rn", "tap"), ("tiny-rn", "t1d")]


@pytest.mark.parametrize("name,temporal", CASES)
def test_shapes_and_gradients(name, temporal):
    bb = build_backbone(name)
    c = 5
    model = build_model(bb, ModelConfig(temporal=temporal, frames=4, temporal_layers=2), Head(random_matrix(c, bb.dim), "random"))
    x = clips(bb)
    z = model.encode(x)
    assert z.shape == (2, bb.dim)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    logits = model(x)
    assert logits.shape == (2, c)
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert model.head.weight.grad is None  # frozen head gets nothing
    visual_grads = [p.grad for p in model.visual.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in visual_grads)
    if temporal == "t-trans":
        assert all(p.grad.abs().sum() > 0 for p in model.temporal.encoder.parameters())
    if temporal in ("t1d", "token-t1d"):
        convs = [m for m in model.visual.modules() if m.__class__.__name__ == "TemporalConv"]
        assert convs and all(m.conv.weight.grad.abs().sum() > 0 for m in convs)


def test_unfrozen_and_learned_heads_get_gradients(tiny):
    for kind, unfreeze in (("text", True), ("learned", False)):
        head = Head(random_matrix(3, tiny.dim), kind, trainable=unfreeze)
        model = build_model(build_backbone("tiny"), ModelConfig(temporal="tap", frames=2), head)
        F.cross_entropy(model(clips(tiny, t=2)), torch.tensor([0, 1])).backward()
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert head.bias.grad is not None


@pytest.mark.parametrize("c,d,norm", [(40, 512, 1.0), (400, 512, 10.0), (101, 768, 20.0)])
def test_learned_head_is_a_plain_linear_layer_starting_at_ln_c(c, d, norm):
    from tkvr.model.heads import head_matrix

    g = torch.Generator().manual_seed(1)
    e = F.normalize(torch.randn(256, d, generator=g), dim=-1) * norm  # video embeddings of CLIP-like norm
    y = torch.randint(0, c, (256,), generator=g)
    head = Head(head_matrix("learned", c, d, seed=3), "learned")
    logits = head(e)
    torch.testing.assert_close(logits, F.linear(e, head.weight, head.bias))  # no normalising, no scale
    assert head.weight.requires_grad and head.bias.requires_grad
    assert head.weight.abs().max() <= d ** -0.5 and torch.equal(head.bias, torch.zeros(c))
    loss = F.cross_entropy(logits, y).item()
    assert abs(loss - math.log(c)) < 0.1 * math.log(c), (loss, math.log(c))
    # the earlier scaled-cosine head started far above ln C: the comparison it tilted
    old = Head(random_matrix(c, d, seed=3), "learned", cosine_learned=True)  # its unit-row init
    assert F.cross_entropy(old(e), y).item() > 2 * math.log(c)


def test_learned_head_on_the_model_starts_at_ln_c(tiny):
    from tkvr.model.heads import head_matrix

    c = 40
    model = build_model(tiny, ModelConfig(temporal="tap", frames=2), Head(head_matrix("learned", c, tiny.dim), "learned"))
    x = clips(tiny, b=16, t=2)
    with torch.no_grad():
        loss = F.cross_entropy(model(x), torch.arange(16) % c).item()
    assert abs(loss - math.log(c)) < 0.1 * math.log(c)


def test_tap_order_invariant_ttrans_not(tiny):
    f = torch.randn(3, 6, tiny.dim)  # [B, T, D]
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    tap = build_model(tiny, ModelConfig(temporal="tap", frames=6), Head(random_matrix(2, tiny.dim), "random")).temporal
    torch.testing.assert_close(tap(f), tap(f[:, perm]))
    tt = build_model(tiny, ModelConfig(temporal="t-trans", frames=6), Head(random_matrix(2, tiny.dim), "random")).temporal
    assert (tt(f) - tt(f[:, perm])).abs().max() > 1e-6


def test_ttrans_starts_near_tap(tiny):
    f = torch.randn(4, 8, tiny.dim)
    tt = build_model(tiny, ModelConfig(temporal="t-trans", frames=8, t_trans_form="near-tap"), Head(random_matrix(2, tiny.dim), "random")).temporal
    out, tap = tt(f), f.mean(1)
    rel = ((out - tap).norm(dim=-1) / tap.norm(dim=-1)).max()
    assert rel < 0.01, rel


def test_ttrans_draws_its_positions_first(tiny):
    """A seed builds the near-tap module it always built: positions first, then the layers (the
    released form's arrival once reordered them, and changed every seeded t-trans run)."""
    from tkvr.model.temporal import TTrans

    for form, std in (("near-tap", 0.2), ("released", 0.02)):
        torch.manual_seed(7)
        tt = TTrans(16, 4, layers=1, form=form)
        torch.manual_seed(7)
        torch.testing.assert_close(tt.pos.detach(), torch.randn(4, 16) * std)


def test_ttrans_released_form(tiny):
    f = torch.randn(4, 8, tiny.dim)  # [B, T, D]
    model = build_model(tiny, ModelConfig(temporal="t-trans", frames=8, temporal_layers=2, t_trans_form="released"), Head(random_matrix(2, tiny.dim), "random"))
    tt = model.temporal
    assert not hasattr(tt, "proj") and 0.015 < tt.pos.std().item() < 0.025
    lin = [m for m in tt.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert lin and all(0.015 < m.weight.std().item() < 0.025 and not m.bias.any() for m in lin)
    torch.testing.assert_close(tt(f), (f + tt.encoder(f + tt.pos)).mean(1))  # mean(x + Transformer(x + pos))
    assert (tt(f) - tt(f[:, torch.randperm(8)])).abs().max() > 1e-6  # it sees order
    F.cross_entropy(model(clips(tiny, t=8)), torch.tensor([0, 1])).backward()
    assert tt.pos.grad.abs().sum() > 0


@pytest.mark.parametrize("name,temporal", [("tiny", "token-t1d"), ("tiny-rn", "t1d")])
def test_temporal_convs_start_as_identity(name, temporal):
    plain = build_backbone(name)
    x = clips(plain, b=2, t=3)
    head = Head(random_matrix(2, plain.dim), "random")
    ref = build_model(plain, ModelConfig(temporal="tap", frames=3), head).encode(x)
    conv = build_model(build_backbone(name), ModelConfig(temporal=temporal, frames=3, t1d_form="identity"), head).encode(x)
    torch.testing.assert_close(conv, ref, atol=1e-5, rtol=1e-5)


def test_token_t1d_released_form_shifts_a_quarter_each_way_in_every_block():
    """The released TokenT1D: in every block, the [class] token's first quarter of channels takes
    the next frame's value, the second quarter the previous frame's (zero past the ends), the
    rest is kept; applied before the attention and again before the MLP."""
    from tkvr.model.temporal import TemporalConv, TokenT1DBlock
    from tkvr.model.video_model import FrameContext

    ctx = FrameContext()
    ctx.t = 4
    conv = TemporalConv(8, ctx, init="shift")
    x = torch.arange(4.0)[:, None].repeat(1, 8) + 1  # [T=4, C=8]: frame t holds t+1 in every channel
    y = conv(x)
    assert y[:, :2].tolist() == [[2, 2], [3, 3], [4, 4], [0, 0]]  # next frame's
    assert y[:, 2:4].tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]  # previous frame's
    torch.testing.assert_close(y[:, 4:], x[:, 4:])  # kept
    bb = build_backbone("tiny")
    model = build_model(bb, ModelConfig(temporal="token-t1d", frames=3), Head(random_matrix(2, bb.dim), "random"))
    blocks = model.visual.transformer.resblocks
    assert all(isinstance(b, TokenT1DBlock) and b.form == "released" for b in blocks)
    calls = []
    for b in blocks:
        b.tconv.register_forward_hook(lambda *a: calls.append(1))
    model(clips(bb, b=2, t=3))
    assert len(calls) == 2 * len(blocks)  # before the attention and before the MLP
    # the shift changes the output at step 0; the identity form does not (tested above)
    ref = build_model(build_backbone("tiny"), ModelConfig(temporal="tap", frames=3), Head(random_matrix(2, bb.dim), "random"))
    x = clips(bb, b=2, t=3)
    assert (model.encode(x) - ref.encode(x)).abs().max() > 1e-4


def test_tiny_is_deterministic():
    a, b = build_backbone("tiny"), build_backbone("tiny")
    for (ka, va), (kb, vb) in zip(a.clip.state_dict().items(), b.clip.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_building_does_not_touch_the_callers_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_backbone("tiny")
    assert torch.equal(torch.rand(3), expected)


def test_preprocessing_comes_from_the_model(tiny):
    assert tiny.image_size == 32  # tkvr/configs/tkvr-tiny.json
    assert len(tiny.preprocess["mean"]) == 3 and len(tiny.preprocess["std"]) == 3


def test_local_checkpoint_path(tmp_path):
    """A saved state dict comes back through --pretrained PATH (open_clip's loader, as for real weights)."""
    bb = build_backbone("tiny")
    with torch.no_grad():
        for p in bb.clip.parameters():
            p.add_(0.5)
    path = tmp_path / "tiny_weights.pt"
    torch.save(bb.clip.state_dict(), path)
    loaded = build_backbone("tiny", str(path))
    for k, v in bb.clip.state_dict().items():
        assert torch.equal(loaded.clip.state_dict()[k], v), k
    assert loaded.pretrained == str(path)
    # a checkpoint of another architecture is refused in one line
    rn = tmp_path / "rn.pt"
    torch.save(build_backbone("tiny-rn").clip.state_dict(), rn)
    with pytest.raises(TkvrError, match="does not fit --backbone tiny"):
        build_backbone("tiny", str(rn))


def test_backbone_errors():
    with pytest.raises(TkvrError, match="--backbone 'nope' is not known"):
        build_backbone("nope")
    with pytest.raises(TkvrError, match="no such file"):
        build_backbone("tiny", "missing/weights.pt")
    with pytest.raises(TkvrError, match="needs --pretrained"):
        build_backbone("ViT-B-32")
    with pytest.raises(TkvrError, match="--pretrained PATH"):  # offline: names the file to get
        build_backbone("ViT-B/32")


def test_temporal_errors(tiny):
    head = Head(random_matrix(2, tiny.dim), "random")
    with pytest.raises(TkvrError, match="choose one of tap, t1d, token-t1d, t-trans"):
        build_model(tiny, ModelConfig(temporal="lstm", frames=4), head)
    with pytest.raises(TkvrError, match="token-t1d"):
        build_model(build_backbone("tiny"), ModelConfig(temporal="t1d", frames=4), head)
    with pytest.raises(TkvrError, match="--temporal t1d"):
        build_model(build_backbone("tiny-rn"), ModelConfig(temporal="token-t1d", frames=4), head)


def test_t1d_blocks_place_the_convolutions_where_asked(run_cli, tmp_path):
    import torch

    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--temporal", "token-t1d", "--t1d-blocks",
                           "0", "--t1d-blocks", "-1", "--frames", "2", "--batch-size", "4", "--workers", "0",
                           "--epochs", "1", "--limit-batches", "1", "--warmup", "0", "--out", tmp_path / "r")
    assert code == 0, err
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    n = len({k.split(".")[3] for k in state["model"] if k.startswith("visual.transformer.resblocks.")})
    with_conv = sorted({int(k.split(".")[3]) for k in state["model"]
                        if k.startswith("visual.transformer.resblocks.") and ".tconv." in k})
    assert with_conv == [0, n - 1] and state["config"]["model"]["t1d_blocks"] == [0, -1]
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--temporal", "token-t1d", "--t1d-blocks",
                           "99", "--out", tmp_path / "bad")
    assert code == 2 and "--t1d-blocks [99]" in err and not (tmp_path / "bad").exists()


def test_eval_reports_gflops_and_parameters_as_counted_by_hand(run_cli, tmp_path):
    """tiny: 32 px, patch 8, width 64, 2 blocks (2 heads), MLP 256, joint width 64; 54 classes, T=2."""
    import json

    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "4",
                           "--workers", "0", "--epochs", "1", "--limit-batches", "1", "--warmup", "0",
                           "--out", tmp_path / "r")
    assert code == 0, err
    code, out, err = run_cli("eval", "--checkpoint", tmp_path / "r", "--views", "2x3", "--workers", "0",
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    t, n, d, hidden, blocks, classes = 2, 17, 64, 256, 2, 54  # n: 16 patches + the class token
    mac = 16 * (3 * 8 * 8) * d  # patch embedding
    mac += blocks * (n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden)  # qkv, QK^T and AV, out, MLP
    mac += d * 64  # projection of the class token
    flops = 2 * (t * mac + 64 * classes)  # per frame, then the head once per view
    assert report["gflops_per_view"] * 1e9 == pytest.approx(flops, rel=1e-9)
    params = 3 * 8 * 8 * d + d + n * d + 2 * d  # conv1, class token, positions, ln_pre
    params += blocks * (2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * hidden + hidden) + (hidden * d + d))
    params += 2 * d + d * 64 + classes * 64 + 1  # ln_post, proj, the (frozen) head, its logit scale
    assert report["params_m"] * 1e6 == pytest.approx(params)
    assert "x 6" in out  # GFLOPs x views in the table


def test_backbones_lists_each_name_once_whole_lines_when_piped_and_open_clips_own_tables(run_cli, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import assert_wrote

    from tkvr.model.backbones import _open_clip

    code, out, err = run_cli("backbones", "--json", tmp_path / "b.json")
    assert code == 0, err
    assert_wrote(out, tmp_path / "b.json")
    listed = json.loads((tmp_path / "b.json").read_text())
    names = [r["backbone"] for r in listed]
    assert len(names) == len(set(names))  # RN50 and ViT-B/16 (= ViT-B-16) once each
    rows = {r["backbone"]: r for r in listed}
    assert names[:3] == ["tiny", "tiny-rn", "toy"] and rows["toy"]["pretrained"] == ["shipped"]
    assert rows["ViT-B/16"]["also"] == "ViT-B-16" and "ViT-B-16" not in rows
    assert rows["ViT-B/16"]["pretrained"][0] == "openai"  # its default first
    assert {"laion2b_s34b_b88k", "dfn2b"} <= set(rows["ViT-B/16"]["pretrained"])
    assert {"yfcc15m", "cc12m"} <= set(rows["RN50"]["pretrained"]) and "also" not in rows["RN50"]
    assert "tkvr-tiny" not in rows  # built-ins appear under the names users type
    assert all(set(r["cached"]) <= set(r["pretrained"]) for r in rows.values())
    # the tables read from open_clip's files are open_clip's own (imported here)
    oc = _open_clip()
    aliased = {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"}
    ours = {m for m in oc.list_models() if m.startswith("tkvr-")}  # built-ins, and tests' own configs
    assert set(names) == set(oc.list_models()) - ours - aliased | {
        "tiny",
        "tiny-rn",
        "toy",
        "ViT-B/32",
        "ViT-B/16",
        "ViT-L/14",
        "ViT-L/14@336px",
    }
    for model in ("coca_ViT-B-32", "ViT-H-14", "RN50"):
        assert set(rows[model]["pretrained"]) == set(oc.list_pretrained_tags_by_model(model))
    # piped (a process): one whole line per name, wider than a terminal, without torch loaded
    probe = (
        "import sys, runpy; sys.argv = ['tkvr', 'backbones']; "
        "import atexit; atexit.register(lambda: sys.stderr.write('TORCH=%s' % ('torch' in sys.modules)))\n"
        "from tkvr.cli import main; main()"
    )
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    *lines, hint = p.stdout.splitlines()
    assert [line.split()[0] for line in lines] == names and "--pretrained TAG" in hint
    assert max(map(len, lines)) > 200  # ViT-B/32's 22 tags on one line, not wrapped at 80
    assert "TORCH=False" in p.stderr


def test_openai_names_use_quickgelu_only_with_openais_weights():
    from tkvr.model.backbones import _resolve

    assert _resolve("ViT-B/16", None) == ("ViT-B-16", "openai", True)
    assert _resolve("ViT-B/16", "weights/clip_b16.pt")[2] is True  # a saved OpenAI file
    # laion's weights of the same architecture were trained with GELU: open_clip's tag says so
    assert _resolve("ViT-B/16", "laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k", False)
