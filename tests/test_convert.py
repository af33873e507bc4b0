"""tkvr convert: the authors' released model files (whwu95/Text4Vis) as tkvr runs.

No released file can be downloaded here, so the tests build files in the released layout from a
reading of the released code at 238c07f (train.py's `epoch_saving`, modules/video_clip.py,
clip/model.py, modules/temporal_modeling.py): `{'epoch', 'model_state_dict',
'optimizer_state_dict'}`, `visual.*` in OpenAI's names, `fusion_model.*` (sim_header Transf),
`control_point.conv.weight` (tm tokent1d), `logit_scale`, with or without DDP's `module.`. The
released forward is re-derived here in plain torch (`released_logits`), independent of tkvr's
modules, and the converted model must give its logits."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import assert_user_error, assert_wrote, small_set

from tkvr.model.backbones import build_backbone


# ---------------------------------------------------------------- the released model, re-derived
def tf_layernorm(x, w, b, eps=1e-12):
    """modules/video_clip.py's LayerNorm: TF style, eps inside the square root."""
    u = x.mean(-1, keepdim=True)
    s = (x - u).pow(2).mean(-1, keepdim=True)
    return w * (x - u) / torch.sqrt(s + eps) + b


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def block(x, sd, p, heads, ln, act=None):
    """One CLIP residual block on [L, N, D] from state-dict entries under prefix p (QuickGELU, as
    OpenAI's CLIP and the released temporal transformer; `act` another activation)."""
    act = act or quick_gelu
    h = ln(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
    a, _ = F.multi_head_attention_forward(
        h, h, h, h.shape[-1], heads, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"], None, None,
        False, 0.0, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], training=False,
        need_weights=False)
    x = x + a
    h = ln(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
    h = act(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
    return x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])


def torch_ln(eps):
    return lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps)


def token_t1d(x, weight, t):
    """modules/temporal_modeling.py's TokenT1D on [L, B*T, C]: the conv over time on the class token."""
    n, bt, c = x.shape
    y = x.permute(1, 0, 2).reshape(bt // t, t, n, c).permute(0, 2, 3, 1)  # [B, L, C, T]
    out = y.clone()
    out[:, 0] = F.conv1d(y[:, 0], weight, padding=1, groups=c)
    return out.permute(1, 0, 3, 2).reshape(n, bt, c)


def released_vit(sd, x, t, heads, act):
    """clip/model.py's VisualTransformer (with its control points) on [B*T, 3, H, W]; `act`: the
    blocks' activation (QuickGELU in OpenAI's CLIP; the `tiny` stand-in's open_clip config has GELU)."""
    x = F.conv2d(x, sd["visual.conv1.weight"], stride=sd["visual.conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)  # [BT, grid^2, W]
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + sd["visual.positional_embedding"]
    ln = torch_ln(1e-5)
    x = ln(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"]).transpose(0, 1)  # [L, BT, W]
    i = 0
    while f"visual.transformer.resblocks.{i}.ln_1.weight" in sd:
        p = f"visual.transformer.resblocks.{i}."
        cp = sd.get(p + "control_point.conv.weight")
        if cp is None:
            x = block(x, sd, p, heads, ln, act)
        else:  # control point before the attention and before the MLP
            x = token_t1d(x, cp, t)
            h = ln(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
            a, _ = F.multi_head_attention_forward(
                h, h, h, h.shape[-1], heads, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"], None,
                None, False, 0.0, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], training=False,
                need_weights=False)
            x = token_t1d(x + a, cp, t)
            h = ln(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
            h = act(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
            x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
        i += 1
    x = ln(x[0], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return x @ sd["visual.proj"]


def released_logits(sd, video, text, vision_heads, text_heads, visual=None, act=F.gelu):
    """VideoCLIP.forward(frames, text_features) of modules/video_clip.py: [B, T, 3, H, W] -> [B, C]."""
    b, t = video.shape[:2]
    frames = video.flatten(0, 1)
    emb = visual(frames) if visual is not None else released_vit(sd, frames, t, vision_heads, act)
    x = emb.view(b, t, -1)
    if "fusion_model.frame_position_embeddings.weight" in sd:  # video_header, sim_header Transf
        orig = x
        x = (x + sd["fusion_model.frame_position_embeddings.weight"][:t]).transpose(0, 1)
        i = 0
        while f"fusion_model.transformer.resblocks.{i}.ln_1.weight" in sd:
            x = block(x, sd, f"fusion_model.transformer.resblocks.{i}.", text_heads, tf_layernorm)
            i += 1
        x = x.transpose(0, 1) + orig
    x = F.normalize(x.mean(1), dim=-1)
    return sd["logit_scale"].exp() * x @ F.normalize(text, dim=-1).T


# ---------------------------------------------------------------- files in the released layout
def released_file(path, backbone="tiny", fusion_layers=2, t1d=False, prefix="", seed=0, frames=2):
    """A released-layout file: the backbone's visual weights (perturbed, so nothing is the
    pre-trained model's by accident), a fusion model built as video_header builds it, logit_scale."""
    from tkvr.model.video_model import text_size

    g = torch.Generator().manual_seed(seed)
    bb = build_backbone(backbone, "none")
    sd = {"visual." + k: v + 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
          for k, v in bb.clip.visual.state_dict().items()}
    width, context = text_size(bb)
    d = bb.dim
    if fusion_layers:
        sd["fusion_model.frame_position_embeddings.weight"] = 0.02 * torch.randn(context, d, generator=g)
        for i in range(fusion_layers):
            p = f"fusion_model.transformer.resblocks.{i}."
            for name, shape in (("attn.in_proj_weight", (3 * d, d)), ("attn.in_proj_bias", (3 * d,)),
                                ("attn.out_proj.weight", (d, d)), ("attn.out_proj.bias", (d,)),
                                ("mlp.c_fc.weight", (4 * d, d)), ("mlp.c_fc.bias", (4 * d,)),
                                ("mlp.c_proj.weight", (d, 4 * d)), ("mlp.c_proj.bias", (d,))):
                sd[p + name] = 0.05 * torch.randn(shape, generator=g)
            for ln in ("ln_1", "ln_2"):
                sd[p + ln + ".weight"] = 1 + 0.1 * torch.randn(d, generator=g)
                sd[p + ln + ".bias"] = 0.1 * torch.randn(d, generator=g)
    if t1d:  # every block, as make_tokenT1D's locations_list; the shift init, moved a little
        w = bb.clip.visual.transformer.width
        fold = w // 4
        for i in range(len(bb.clip.visual.transformer.resblocks)):
            conv = torch.zeros(w, 1, 3)
            conv[:fold, 0, 2] = 1
            conv[fold:2 * fold, 0, 0] = 1
            conv[2 * fold:, 0, 1] = 1
            sd[f"visual.transformer.resblocks.{i}.control_point.conv.weight"] = conv + 0.05 * torch.randn(
                conv.shape, generator=g)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07)) + 0.3
    sd = {prefix + k: v for k, v in sd.items()}
    torch.save({"epoch": 29, "model_state_dict": sd, "optimizer_state_dict": {}}, path)
    return {k[len(prefix):]: v for k, v in sd.items()}


NAMES = "apply eye makeup,archery,brush hair"


def convert(run_cli, src, out, *extra):
    code, stdout, err = run_cli("convert", src, "--labels", NAMES, "--frames", "2", "--out", out, *extra)
    assert code == 0, err
    assert_wrote(stdout, out)
    return stdout


def converted_logits(out, video):
    from tkvr.run.checkpoint import load_model, read_checkpoint

    _, _, model = load_model(read_checkpoint(str(out)))
    with torch.no_grad():
        return model(video), model


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_released_vit_with_its_temporal_transformer_gives_the_released_logits(run_cli, tmp_path, prefix):
    sd = released_file(tmp_path / "k400.pt", prefix=prefix)
    out = tmp_path / "run"
    said = convert(run_cli, tmp_path / "k400.pt", out)
    assert "wrote" in said and "t-trans" in said
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["model"]["backbone"], cfg["model"]["temporal"], cfg["model"]["t_trans_form"],
            cfg["model"]["temporal_layers"], cfg["model"]["class_names"]) == ("tiny", "t-trans", "clip", 2, "released")
    assert "tkvr convert" in cfg["run"]["command"] and "k400.pt" in cfg["run"]["command"]
    video = torch.randn(3, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got, model = converted_logits(out, video)
    text = model.head.weight.detach()
    want = released_logits(sd, video, text, vision_heads=64 // 32, text_heads=32 // 64 or 1)
    assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def test_the_released_temporal_transformer_against_its_formula():
    """The clip form against x + Transformer(x + pos), mean over time, with QuickGELU and
    LayerNorm eps 1e-12 (TF style), written out here."""
    from tkvr.model.temporal import ClipTTrans

    torch.manual_seed(0)
    m = ClipTTrans(16, layers=2, heads=2, positions=8)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    sd = {"fusion_model." + k: v for k, v in m.state_dict().items()}
    x = torch.randn(4, 5, 16)  # [B, T, D]
    orig = x
    y = (x + sd["fusion_model.frame_position_embeddings.weight"][:5]).transpose(0, 1)
    for i in range(2):
        y = block(y, sd, f"fusion_model.transformer.resblocks.{i}.", 2, tf_layernorm)
    want = (y.transpose(0, 1) + orig).mean(1)
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)
    assert m.transformer.resblocks[0].ln_1.eps == 1e-12


def test_a_released_vit_with_token_t1d(run_cli, tmp_path):
    sd = released_file(tmp_path / "t1d.pt", fusion_layers=0, t1d=True)
    out = tmp_path / "run"
    convert(run_cli, tmp_path / "t1d.pt", out)
    cfg = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert (cfg["temporal"], cfg["t1d_form"], cfg["t1d_blocks"]) == ("token-t1d", "released", None)
    video = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got, model = converted_logits(out, video)
    want = released_logits(sd, video, model.head.weight.detach(), vision_heads=2, text_heads=1)
    assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def test_a_released_resnet_without_a_temporal_module(run_cli, tmp_path):
    sd = released_file(tmp_path / "rn.pt", backbone="tiny-rn", fusion_layers=0)
    out = tmp_path / "run"
    convert(run_cli, tmp_path / "rn.pt", out)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["backbone"] == "tiny-rn"
    size = build_backbone("tiny-rn", meta=True).image_size  # 64: attnpool over 2 x 2
    video = torch.randn(2, 2, 3, size, size, generator=torch.Generator().manual_seed(3))
    got, model = converted_logits(out, video)
    ref = build_backbone("tiny-rn", "none").clip.visual.eval()  # OpenAI's ModifiedResNet, the file's weights
    ref.load_state_dict({k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")})
    with torch.no_grad():
        want = released_logits(sd, video, model.head.weight.detach(), 0, 0, visual=ref)
    assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def test_a_vit_b16_sized_layout_is_read_from_its_shapes(tmp_path):
    """The architecture comes from the shapes (ViT-B/16 and ViT-L/14@336px on the meta device), and
    the converted names are exactly the tkvr model's, shapes included."""
    from tkvr.model.heads import Head
    from tkvr.model.released import layout, to_tkvr
    from tkvr.model.video_model import build_model
    from tkvr.run.convert import backbone_for
    from tkvr.run.settings import TrainConfig

    for name, layers in (("ViT-B/16", 12), ("ViT-L/14@336px", 24)):
        bb = build_backbone(name, meta=True)
        sd = {"module.visual." + k: v for k, v in bb.clip.visual.state_dict().items()}
        sd.update({f"module.fusion_model.transformer.resblocks.{i}.ln_1.weight": torch.empty(bb.dim, device="meta")
                   for i in range(6)})
        state = {k[len("module."):]: v for k, v in sd.items()}
        lay = layout(state)
        assert (lay.kind, lay.layers, lay.temporal, lay.fusion_layers) == ("vit", layers, "t-trans", 6)
        assert backbone_for(lay, None, "f") == name
        cfg = TrainConfig()
        cfg.model.backbone, cfg.model.temporal, cfg.model.t_trans_form = name, "t-trans", "clip"
        with torch.device("meta"):
            model = build_model(bb, cfg.model, Head(torch.zeros(3, bb.dim), "text", learn_scale=True))
        own = model.state_dict()
        mapped = to_tkvr({k: v for k, v in state.items() if k.startswith("visual.")}, lay)
        assert all(k in own and own[k].shape == v.shape for k, v in mapped.items())
        assert {k for k in own if k.startswith("visual.")} == set(mapped)
        # the fusion model's names are the released ones: heads = text width / 64
        assert model.temporal.transformer.resblocks[0].attn.num_heads == (8 if name == "ViT-B/16" else 12)
        assert model.temporal.frame_position_embeddings.weight.shape == (77, bb.dim)


def test_convert_then_eval_predict_export_and_train_init(run_cli, tmp_path):
    """The converted run is an ordinary run: eval and predict score with it, export writes it,
    and train --init starts from its weights: its first validation is the converted model's eval."""
    data = small_set(tmp_path, bad=())  # classes x, y; three clips
    released_file(tmp_path / "k400.pt")
    out = tmp_path / "conv"
    code, _, err = run_cli("convert", tmp_path / "k400.pt", "--data", data, "--frames", "2", "--out", out)
    assert code == 0, err
    code, _, err = run_cli("eval", "--checkpoint", out, "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    top1 = json.loads((tmp_path / "e.json").read_text())["top1"]
    code, stdout, err = run_cli("predict", data / "a.mp4", "--checkpoint", out, "--top-k", "1", "--workers", "0",
                                "--json", tmp_path / "p.json")
    assert code == 0, err
    assert json.loads((tmp_path / "p.json").read_text())[0]["labels"][0] in ("x", "y")
    code, _, err = run_cli("zeroshot", "--checkpoint", out, "--train", data, "--eval", data, "--no-train",
                           "--workers", "0", "--out", tmp_path / "zs", "--json", tmp_path / "zs.json")
    assert code == 0, err
    row = json.loads((tmp_path / "zs.json").read_text())["without_training"]
    assert row["top1"] == pytest.approx(top1) and row["scored_by"]["temporal"] == "t-trans"
    assert row["scored_by"]["checkpoint"].startswith(str(out))
    code, _, err = run_cli("export", "--checkpoint", out, "--out", tmp_path / "m.pt2")
    assert code == 0, err
    clips = torch.randn(2, 2, 3, 32, 32)
    want, _ = converted_logits(out, clips)
    torch.testing.assert_close(torch.export.load(tmp_path / "m.pt2").module()(clips), want, atol=1e-4, rtol=1e-4)
    code, stdout, err = run_cli("train", "--data", data, "--init", out, "--batch-size", "3", "--workers", "0",
                                "--epochs", "1", "--warmup", "0", "--lr", "1e-3", "--out", tmp_path / "ft")
    assert code == 0, err
    assert "starting from the weights of" in stdout
    assert f"sanity validation (2 batches): top-1 {top1:.1f}% on 3 clips" in stdout
    ft = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["model"]
    assert (ft["temporal"], ft["t_trans_form"], ft["frames"]) == ("t-trans", "clip", 2)  # the converted run's
    from tkvr.run.checkpoint import read_checkpoint

    a, b = read_checkpoint(str(out))["model"], read_checkpoint(str(tmp_path / "ft"))["model"]
    assert not torch.equal(a["visual.proj"], b["visual.proj"])  # and it trained


def test_files_that_are_not_released_models_are_refused(run_cli, tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"model_state_dict": Payload()}, f)
    torch.save({"model_state_dict": {"a": Payload()}}, tmp_path / "evil_zip.pt")
    bb = build_backbone("tiny", "none")
    torch.save(bb.clip.state_dict(), tmp_path / "clip.pt")
    torch.save({"model_state_dict": {"visual.conv1.weight": torch.zeros(1)}, "fusion_model_state_dict": {}},
               tmp_path / "actionclip.pt")
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    for name, words in (("evil.pt", ["raw pickle"]), ("evil_zip.pt", ["refused"]), ("clip.pt", ["plain CLIP"]),
                        ("actionclip.pt", ["ActionCLIP"]), ("other.pt", ["no visual"]), ("missing.pt", ["no such file"])):
        code, _, err = run_cli("convert", tmp_path / name, "--labels", NAMES, "--out", tmp_path / "o")
        assert_user_error(code, err, *words)
        assert not (tmp_path / "o").exists() and not (tmp_path / "ran").exists()
    released_file(tmp_path / "ok.pt")
    code, _, err = run_cli("convert", tmp_path / "ok.pt", "--labels", NAMES, "--backbone", "toy", "--out", tmp_path / "o")
    assert_user_error(code, err, "--backbone toy does not have the visual encoder")
    code, _, err = run_cli("convert", tmp_path / "ok.pt", "--out", tmp_path / "o")
    assert_user_error(code, err, "--labels")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("prefix", ["module."])
def test_a_released_vit_b16_gives_the_released_logits(run_cli, tmp_path, prefix):
    """A ViT-B/16-sized released file (random weights in the released layout, 6-layer temporal
    transformer, DDP's prefix) converts with --pretrained none (no download here: the text tower is
    random too) and scores a clip as the released forward does, QuickGELU throughout (2 frames:
    the suite's time; the formula is the same for 8)."""
    sd = released_file(tmp_path / "b16.pt", backbone="ViT-B/16", fusion_layers=6, prefix=prefix, frames=8)
    out = tmp_path / "run"
    code, stdout, err = run_cli("convert", tmp_path / "b16.pt", "--labels", NAMES, "--pretrained", "none",
                                "--frames", "2", "--out", out)
    assert code == 0, err
    assert "ViT-B/16" in stdout
    video = torch.randn(1, 2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    got, model = converted_logits(out, video)
    with torch.no_grad():
        want = released_logits(sd, video, model.head.weight.detach(), vision_heads=12, text_heads=8, act=quick_gelu)
    assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def test_mistakes_around_a_converted_run(run_cli, tmp_path):
    """One line each, naming the flag: eval of a run converted with --labels alone needs --data;
    --init of no run, or of a model another run's flags do not fit; --resume of a converted model;
    convert given --labels and --data."""
    data = small_set(tmp_path, bad=())
    released_file(tmp_path / "k400.pt")
    out = tmp_path / "conv"
    convert(run_cli, tmp_path / "k400.pt", out)  # --labels only: no dataset recorded
    code, _, err = run_cli("eval", "--checkpoint", out, "--workers", "0")
    assert_user_error(code, err, "names no dataset", "--data")
    code, _, err = run_cli("train", "--data", data, "--init", tmp_path / "nothing", "--out", tmp_path / "a")
    assert_user_error(code, err, "--init", "no such file or run directory")
    code, _, err = run_cli("train", "--data", data, "--init", out, "--temporal", "tap", "--workers", "0",
                           "--out", tmp_path / "b")
    assert_user_error(code, err, "--init", "do not fit", "unexpected 'temporal.")
    assert not (tmp_path / "b").exists()
    code, _, err = run_cli("train", "--data", data, "--out", out, "--resume", "auto")
    assert_user_error(code, err, "--resume", "converted released model", "--init")
    code, _, err = run_cli("convert", tmp_path / "k400.pt", "--labels", NAMES, "--data", data, "--out", tmp_path / "c")
    assert_user_error(code, err, "--labels and --data")
