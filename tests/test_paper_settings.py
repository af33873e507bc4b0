"""The paper's settings as defaults: the model's own logit scale, the paper's cost convention,
--dry-run, features averaged over views, the released weight decay, the zero-shot eval set, and
old checkpoints evaluating as they trained."""
import csv
import math

import pytest
import torch
import yaml
from conftest import PRE, fast, small_set

from tkvr.run.settings import TOY_RECIPE

FAST = fast(epochs=1, limit_batches=2)


def toy_flags(**over) -> list[str]:
    out = []
    for k, v in {**TOY_RECIPE, "workers": 0, **over}.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def first_loss(run_cli, out, *extra) -> float:
    code, _, err = run_cli("train", "--data", "toy", *toy_flags(temporal="tap", epochs=1), "--limit-batches", "1",
                           "--log-every", "1", "--out", out, *extra)
    assert code == 0, err
    return float(next(csv.DictReader((out / "steps.csv").open()))["loss"])


def test_text_head_starts_near_ln_c_at_the_toy_clips_own_scale(run_cli, tmp_path):
    """At the toy CLIP's own logit scale (about 22) a frozen text head's first loss is below ln C
    (a uniform guess: the head starts from its zero-shot knowledge) and of that order; at CLIP's
    100, which tkvr used to impose, it starts far above."""
    from tkvr.model.backbones import build_backbone
    from tkvr.run.checkpoint import load_model, read_checkpoint

    own = float(build_backbone("toy").clip.logit_scale.detach().exp())
    assert 20 < own < 35
    c = 54
    loss = first_loss(run_cli, tmp_path / "own")
    assert 0.5 * math.log(c) < loss < math.log(c), loss
    assert first_loss(run_cli, tmp_path / "hundred", "--logit-scale", "100") > 2 * math.log(c)
    # the checkpoint stores the scale the run trained to, and eval rebuilds the head with it
    ck = read_checkpoint(str(tmp_path / "own"))
    trained = float(ck["model"]["head.logit_scale"].exp())
    assert trained != pytest.approx(own, abs=1e-6) and abs(trained - own) < 1  # learned, one small step
    _, _, model = load_model(ck)
    assert float(model.head.scale.detach()) == pytest.approx(trained)
    z = torch.nn.functional.normalize(torch.randn(2, model.head.weight.shape[1]), dim=-1)
    torch.testing.assert_close(model.head(z), trained * z @ model.head.weight.T)
    # fixed keeps the pre-trained value
    code, _, err = run_cli("train", "--data", "toy", *toy_flags(temporal="tap", epochs=1), "--limit-batches", "1",
                           "--logit-scale", "fixed", "--out", tmp_path / "fixed")
    assert code == 0, err
    fixed = read_checkpoint(str(tmp_path / "fixed"))["model"]["head.logit_scale"].exp()
    assert float(fixed) == pytest.approx(own, rel=1e-6)


def test_logit_scale_trains_with_the_backbone_and_decay_reaches_every_parameter(tiny):
    from tkvr.model.backbones import build_backbone
    from tkvr.model.heads import Head, random_matrix
    from tkvr.model.settings import ModelConfig
    from tkvr.model.video_model import build_model

    model = build_model(build_backbone("tiny"), ModelConfig(temporal="t-trans", frames=2, temporal_layers=1), Head(random_matrix(5, tiny.dim), "text",
                                                                learn_scale=True))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = model.param_groups(1e-5, 10.0, 0.2, "all")
    where = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert where["head.logit_scale"] == (1e-5, 0.2)  # the CLIP group, as released
    assert where["temporal.pos"] == (1e-4, 0.2) and where["visual.ln_pre.bias"] == (1e-5, 0.2)
    assert "head.weight" not in where  # frozen
    old = {names[id(p)]: g["weight_decay"] for g in model.param_groups(1e-5, 10.0, 0.2, "matrices")
           for p in g["params"]}
    assert old["visual.ln_pre.bias"] == 0.0 and old["head.logit_scale"] == 0.0 and old["visual.proj"] == 0.2


def test_dry_run_checks_the_weights_offline_and_names_them(run_cli, tmp_path, monkeypatch):
    """--dry-run refuses what the run would refuse before its first step (weights neither cached
    nor downloadable, a file that is not there, an unknown tag), and says what it would load."""
    from conftest import assert_user_error

    import tkvr.model.backbones

    def weights(*flags):
        code, out, err = run_cli("train", "--data", "toy", *flags, "--out", tmp_path / "r", "--dry-run")
        return (yaml.safe_load(out)["weights"] if code == 0 else None), code, err

    assert weights("--backbone", "tiny")[0] == {"backbone": "tkvr-tiny, a random init (fixed seed)"}
    assert weights("--backbone", "toy")[0]["backbone"].startswith("tkvr-toy from the shipped ")
    _, code, err = weights("--backbone", "ViT-L/14")  # offline here, and nothing in the cache
    assert_user_error(code, err, "ViT-L-14 (openai)", "timm/vit_large_patch14_clip_224.openai", "--pretrained PATH")
    _, code, err = weights("--backbone", "ViT-B/16", "--pretrained", tmp_path / "gone.pt")
    assert_user_error(code, err, f"--pretrained {tmp_path / 'gone.pt'}: no such file")
    _, code, err = weights("--backbone", "ViT-B-16", "--pretrained", "laion")
    assert_user_error(code, err, "--pretrained 'laion'", "laion2b_s34b_b88k")
    saved = tmp_path / "clip_b16.pt"
    saved.write_bytes(b"")  # a dry-run does not open it
    assert weights("--backbone", "ViT-B/16", "--pretrained", saved)[0] == {"backbone": f"ViT-B-16 from {saved}"}
    monkeypatch.setattr(tkvr.model.backbones, "cached", lambda *a, **k: True)  # as if downloaded
    assert weights("--backbone", "ViT-L/14")[0] == {
        "backbone": "ViT-L-14 openai, in the Hugging Face cache (timm/vit_large_patch14_clip_224.openai)"}
    assert not (tmp_path / "r").exists()


def test_eval_dry_run_names_the_checkpoint_and_the_text_towers_weights(run_cli, tiny_run):
    """eval's weights are the checkpoint's; other class names need the backbone's text tower too."""
    code, out, err = run_cli("eval", "--checkpoint", tiny_run, "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out)["weights"] == {"model": str(tiny_run / "checkpoints" / "last.pt")}
    code, out, err = run_cli("eval", "--checkpoint", tiny_run, "--data", "toy@unseen", "--labels", "data",
                             "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out)["weights"]["text"] == "tkvr-tiny, a random init (fixed seed)"


def test_dry_run_prints_the_papers_cost_and_writes_nothing(run_cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", "--data", "toy", "--backbone", "ViT-B/16", "--pretrained", "none",
                                "--frames", "8", "--out", out, "--dry-run")
    assert code == 0, err
    plan = yaml.safe_load(stdout)
    cost = plan["cost"]
    assert cost["gflops_per_frame_paper"] == 11.3 and cost["params_m_paper"] == 57.3
    assert cost["gflops_per_view_paper"] == pytest.approx(8 * 11.27, abs=0.1)
    assert 34 * 8 < cost["gflops_per_view"] < 36 * 8 and 86 < cost["params_m"] < 87  # tkvr's full count
    assert plan["model"]["logit_scale"] == "learn" and plan["model"]["t_trans_form"] == "released"
    assert plan["data"]["randaugment"] == "frame" and plan["auto"]["precision"] == "32-true"
    assert plan["classes"] == 54 and not out.exists()
    # a bad flag is still refused first
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--logit-scale", "hot", "--dry-run")
    assert code == 2 and "--logit-scale 'hot'" in err
    # the new number flags name themselves, all in one line, before anything is written
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--test-scale", "0.5", "--crop-area", "0",
                           "--grayscale", "2", "--out", out, "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert all(f in err for f in ("--test-scale must be in [1, 4]", "--crop-area must be in (0, 1]",
                                  "--grayscale must be in [0, 1]"))


def test_paper_cost_of_the_large_models():
    """The paper's Tables 7 and 12: multiply-accumulates of the patch embedding and MLP linears."""
    from tkvr.model.backbones import build_backbone
    from tkvr.model.cost import paper_cost

    got = {}
    for name in ("ViT-B/16", "ViT-L/14", "ViT-L/14@336px"):
        g, p = paper_cost(build_backbone(name, meta=True).clip.visual, 1)
        got[name] = (round(g, 1), round(p, 1))
    assert got == {"ViT-B/16": (11.3, 57.3), "ViT-L/14": (51.9, 202.1), "ViT-L/14@336px": (116.5, 202.1)}
    g32, _ = paper_cost(build_backbone("ViT-L/14", meta=True).clip.visual, 32)
    assert round(g32, 1) == 1660.6  # the frames alone
    # Table 7 (32 frames, T-Trans): the frames plus the temporal transformer's MLPs (6 layers of
    # 768 -> 3072 -> 768 over 32 tokens: 0.906 G, 28.3 M); the paper prints 1662 / 3829 and 230.7
    from tkvr.model.cost import cost_of
    from tkvr.run.settings import TrainConfig

    got = {}
    for name in ("ViT-L/14", "ViT-L/14@336px"):
        cfg = TrainConfig()
        cfg.model.backbone, cfg.model.frames, cfg.model.temporal = name, 32, "t-trans"
        c = cost_of(cfg, 400)
        got[name] = (c["gflops_per_frame_paper"], c["gflops_per_view_paper"], c["params_m_paper"])
    assert got == {"ViT-L/14": (51.9, 1661.5, 230.4), "ViT-L/14@336px": (116.5, 3729.3, 230.4)}
    assert paper_cost(build_backbone("tiny-rn", meta=True).clip.visual, 8) is None  # not a ViT
    # tiny by hand: 16 patches of 3x8x8 -> 64, 17 tokens through 2 MLPs of 64 -> 256 -> 64
    g, p = paper_cost(build_backbone("tiny").clip.visual, 2)
    assert g * 1e9 == pytest.approx(2 * (16 * 192 * 64 + 17 * 2 * 2 * 64 * 256))
    assert p * 1e6 == pytest.approx(192 * 64 + 2 * (64 * 256 + 256 + 256 * 64 + 64))


def test_features_averaged_over_views_then_scored(tiny):
    """--view-average features (released test.py): softmax(head(mean of the views' embeddings));
    scores: the mean of each view's softmax. They differ on the same views."""
    from lightning_fabric import Fabric

    from tkvr.model.backbones import build_backbone
    from tkvr.model.heads import Head, random_matrix
    from tkvr.model.settings import ModelConfig
    from tkvr.model.video_model import build_model
    from tkvr.run.metrics import predict_scores

    model = build_model(build_backbone("tiny"), ModelConfig(temporal="tap", frames=2), Head(random_matrix(4, tiny.dim), "text", scale=30.0))
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 6, 2, 3, 32, 32, generator=g)  # [B, V, T, 3, H, W]
    batch = {"video": video, "label": torch.tensor([0, 1, 2]), "index": torch.arange(3),
             "bad": torch.full((3,), -1)}
    fabric = Fabric(accelerator="cpu", devices=1)
    feats = predict_scores(fabric, model, [batch], average="features")["scores"]
    scores = predict_scores(fabric, model, [batch], average="scores")["scores"]
    with torch.no_grad():
        e = model.embed(video.flatten(0, 1)).view(3, 6, -1)  # [B, V, D]
        want_f = model.head(e.mean(1)).softmax(-1)
        want_s = model.head(e.flatten(0, 1)).softmax(-1).view(3, 6, -1).mean(1)
    torch.testing.assert_close(feats, want_f)
    torch.testing.assert_close(scores, want_s)
    assert (feats - scores).abs().max() > 1e-4


def test_old_checkpoint_evaluates_as_it_trained(run_cli, tmp_path):
    """A checkpoint written before these settings existed (no logit scale in its state, none of
    the new keys in its config) rebuilds with what it trained with: scale 100, the near-TAP
    T-Trans, the old crop area, short side = crop size, softmax scores averaged."""
    from tkvr.run.checkpoint import config_of, load_model, read_checkpoint

    out = tmp_path / "r"
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--temporal", "t-trans", "--temporal-layers", "1",
                           "--t-trans-form", "near-tap", "--out", out)
    assert code == 0, err
    path = out / "checkpoints" / "last.pt"
    ck = torch.load(path, weights_only=True)
    del ck["checksum"]  # checkpoints written before checksums had none
    del ck["model"]["head.logit_scale"]
    for group, keys in (("model", ("t_trans_form", "t1d_form", "logit_scale")),
                        ("data", ("crop_area", "grayscale", "test_scale", "view_average")), ("optim", ("decay",))):
        for k in keys:
            del ck["config"][group][k]
    ck["config"]["data"]["randaugment"] = False  # once a switch
    torch.save(ck, path)
    cfg = config_of(read_checkpoint(str(path)))
    assert (cfg.model.t_trans_form, cfg.model.logit_scale, cfg.data.test_scale, cfg.data.view_average,
            cfg.data.crop_area, cfg.data.randaugment, cfg.optim.decay) == \
        ("near-tap", 100.0, 1.0, "scores", 0.25, "off", "matrices")
    _, _, model = load_model(read_checkpoint(str(path)))
    assert float(model.head.scale) == pytest.approx(100.0)
    code, stdout, err = run_cli("eval", "--checkpoint", path, "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    import json

    report = json.loads((tmp_path / "e.json").read_text())
    assert report["test_scale"] == 1.0 and report["view_average"] == "scores"


def test_zero_shot_scores_every_video_of_another_dataset(tmp_path):
    """--eval-set auto: all (train and val lists, and HMDB-51's unused videos) for another dataset,
    the val split for a class subset of the training dataset."""
    from tkvr.data.specs import resolve

    root = tmp_path / "hmdb51"
    (root / "testTrainMulti_7030_splits").mkdir(parents=True)
    for c in ("brush_hair", "cartwheel"):
        (root / "testTrainMulti_7030_splits" / f"{c}_test_split1.txt").write_text(
            f"{c}_a.avi 1\n{c}_b.avi 2\n{c}_c.avi 0\n")
    src = resolve(str(root))
    assert len(src.split("train")) == len(src.split("val")) == 2
    assert len(src.every()) == 6  # every video the split files list
    assert len(src.subset(["cartwheel"], "one").every()) == 3


def test_test_scale_follows_the_released_rule(run_cli, tmp_path):
    """Released test.py (238c07f): `scale_size = 256 if input_size == 224 else input_size`. A
    336-px run records 1 (short side 336, not 384), a 224-px run 256/224; eval builds its
    transform from the recorded value, or from the rule where none was recorded."""
    from tkvr.data.loader import eval_set
    from tkvr.data.specs import resolve
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import Reading

    scales = {}
    for backbone in ("ViT-L/14@336px", "ViT-B/16"):
        code, out, err = run_cli("train", "--data", "toy", "--backbone", backbone, "--pretrained", "none",
                                 "--out", tmp_path / "r", "--dry-run")
        assert code == 0, err
        scales[backbone] = yaml.safe_load(out)["data"]["test_scale"]
    assert scales == {"ViT-L/14@336px": 1.0, "ViT-B/16": pytest.approx(256 / 224)}
    src = resolve(str(small_set(tmp_path, bad=())))
    for size, scale, short in ((336, 1.0, 336), (224, 256 / 224, 256), (336, None, 336), (224, None, 256),
                               (40, None, 40)):
        ds = eval_set(src.split("val")[:1], Reading.of(src, "pyav"), 2, {**PRE, "size": size}, (1, 3), scale)
        assert ds.transform.short == short, (size, scale)
    frames = torch.randint(0, 255, (2, 3, 480, 640), dtype=torch.uint8)
    assert EvalTransform({**PRE, "size": 336}, 3)(frames).shape == (3, 2, 3, 336, 336)
    code, out, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--test-scale", "1.5",
                             "--out", tmp_path / "x", "--dry-run")
    assert code == 0 and yaml.safe_load(out)["data"]["test_scale"] == 1.5, err  # a given scale is kept


def test_dry_run_on_a_fresh_cache_writes_no_file(run_cli, tmp_path, monkeypatch):
    """--dry-run resolves from what exists: the toy world not yet written is described from its
    lists (and said), not generated; nothing appears in the cache or the working folder."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    cache.mkdir()
    work.mkdir()
    monkeypatch.setenv("TKVR_CACHE", str(cache))
    monkeypatch.chdir(work)
    plans = []
    for args in (["train", "--data", "toy", "--backbone", "tiny"],
                 ["fewshot", "--data", "toy", "--backbone", "tiny", "--shots", "1,all"],
                 ["zeroshot", "--train", "toy@seen", "--eval", "toy@unseen", "--backbone", "tiny"],
                 ["zeroshot", "--train", "toy", "--eval", "toy", "--no-train", "--backbone", "tiny"]):
        code, out, err = run_cli(*args, "--dry-run")
        assert code == 0, (args, err)
        assert "# toy world: not written yet; a run writes 1080 videos" in out, out
        plans.append(yaml.safe_load(out))
    assert [p for p in cache.rglob("*")] == [] and [p for p in work.rglob("*")] == []
    assert plans[0]["classes"] == 54 and plans[0]["train_samples"] == 864
    assert plans[2]["zeroshot"]["eval_classes"] == 18 and plans[2]["zeroshot"]["eval_samples"] == 72
    assert plans[3]["zeroshot"]["eval_samples"] == 216  # the val split of every class


@pytest.mark.parametrize("size, short", [(336, 336), (224, 256)])
def test_eval_of_a_run_resizes_by_the_released_rule(run_cli, tmp_path, monkeypatch, size, short):
    """`tkvr eval` of a 336-px run resizes the short side to 336, of a 224-px run to 256: a tiny
    model of that input size (open_clip config, 4 x 4 patches) trained for one step on three
    clips, then scored."""
    import json

    from tkvr.data import transforms
    from tkvr.model.backbones import CONFIG_DIR, _open_clip

    cfg = json.loads((CONFIG_DIR / "tkvr-tiny.json").read_text())
    cfg["vision_cfg"].update(image_size=size, patch_size=size // 4)  # 4 x 4 patches
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / f"tkvr-tiny{size}.json").write_text(json.dumps(cfg))
    _open_clip().add_model_config(tmp_path / "cfg")
    out, data = tmp_path / "run", small_set(tmp_path, bad=())  # three short clips
    code, _, err = run_cli("train", "--data", data, "--backbone", f"tkvr-tiny{size}", "--pretrained", "none",
                           "--frames", "2", "--batch-size", "4", "--workers", "0", "--epochs", "1", "--limit-batches",
                           "1", "--warmup", "0", "--out", out)
    assert code == 0, err
    seen = []
    real = transforms.EvalTransform.forward

    def spy(self, x):
        seen.append((self.short, min(transforms.TF.resize(x, [self.short], antialias=True).shape[-2:])))
        return real(self, x)

    monkeypatch.setattr(transforms.EvalTransform, "forward", spy)
    code, _, err = run_cli("eval", "--checkpoint", out, "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    assert seen and set(seen) == {(short, short)}
    assert json.loads((tmp_path / "e.json").read_text())["test_scale"] == pytest.approx(short / size)
