"""train / eval / predict end to end on the toy world with the tiny backbone (CPU)."""
import csv
import json
import os
import pickle
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import (
    LIBRARY_NOISE,
    TINY_RUN,
    assert_user_error,
    fast,
    realdata,
)

from tkvr.data.toy import toy_classes

FAST = fast(data="toy", lr="1e-4")
WHOLE_VAL = fast(data="toy", lr="1e-4", limit_val_batches=None)  # for a test that reads the final validation


def train(run_cli, out, *extra, flags=FAST):
    code, stdout, err = run_cli("train", *flags, "--out", out, *extra)
    assert code == 0, err + stdout
    return stdout


def model_state(path):
    return torch.load(path, weights_only=True)["model"]


def test_train_eval_predict_end_to_end(run_cli, tmp_path):
    out = tmp_path / "run"
    stdout = train(run_cli, out, "--epochs", "1", "--limit-batches", "4", flags=WHOLE_VAL)
    for name in ("config.yaml", "metrics.csv", "steps.csv", "report.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and rows[0]["step"] == "4"
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 4 and report["final"]["num_samples"] == 216
    assert abs(report["final"]["top1"] - float(rows[0]["val_top1"])) < 1e-3
    assert "versions" in report and report["command"].startswith("tkvr train")
    assert "sanity validation (2 batches)" in stdout and "final: top-1" in stdout

    code, _, err = run_cli("eval", "--checkpoint", out, "--views", "1x1", "--workers", "0", "--json", tmp_path / "e1.json")
    assert code == 0, err
    e1 = json.loads((tmp_path / "e1.json").read_text())
    assert set(e1) >= {"top1", "top5", "mean_class_accuracy", "num_samples", "views", "per_class"}
    assert e1["num_samples"] == 216 and e1["views"] == "1x1"
    assert abs(e1["top1"] - report["final"]["top1"]) < 1e-3  # the checkpoint alone reproduces training's number
    assert len(e1["per_class"]) == 54 and e1["top5"] >= e1["top1"]
    assert abs(sum(e1["per_class"].values()) / 54 - e1["mean_class_accuracy"]) < 1e-3

    code, _, err = run_cli("eval", "--checkpoint", out, "--views", "2x3", "--workers", "0", "--json", tmp_path / "e6.json")
    assert code == 0, err
    e6 = json.loads((tmp_path / "e6.json").read_text())
    assert e6["num_samples"] == 216 and e6["views"] == "2x3"

    clip = realdata("videos") / "k400_arm_wrestling_mmaction2_demo.mp4"
    img = realdata("images") / "skimage_chelsea.png"
    code, _, err = run_cli("predict", clip, img, "--checkpoint", out, "--top-k", "3", "--json", tmp_path / "p.json")
    assert code == 0, err
    preds = json.loads((tmp_path / "p.json").read_text())
    assert [p["file"] for p in preds] == [str(clip), str(img)]
    toy = json.loads((out / "report.json").read_text())  # labels come from the toy classes
    names = set(toy_classes())
    for p in preds:
        assert len(p["labels"]) == 3 and set(p["labels"]) <= names
        assert p["scores"] == sorted(p["scores"], reverse=True) and 0 < sum(p["scores"]) <= 1.0001
    code, _, err = run_cli("predict", clip, "--checkpoint", out, "--labels", "cat,arm wrestling", "--json",
                           tmp_path / "p2.json")
    assert code == 0, err
    p2 = json.loads((tmp_path / "p2.json").read_text())[0]
    assert sorted(p2["labels"]) == ["arm wrestling", "cat"] and abs(sum(p2["scores"]) - 1) < 1e-4
    assert toy["run"] == str(out)


def test_resume_is_bit_exact(run_cli, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--epochs", "2", "--limit-batches", "3", "--seed", "3"]
    train(run_cli, full, *args)
    train(run_cli, part, *args, "--max-steps", "3")  # stops at the end of epoch 1
    assert torch.load(part / "checkpoints/last.pt", weights_only=True)["epoch"] == 1
    out = train(run_cli, part, *args, "--resume", "auto")
    assert "resumed from" in out
    a, b = model_state(full / "checkpoints/last.pt"), model_state(part / "checkpoints/last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = list(csv.DictReader((full / "metrics.csv").open()))
    mb = list(csv.DictReader((part / "metrics.csv").open()))
    assert [r["val_top1"] for r in ma] == [r["val_top1"] for r in mb]
    assert [r["train_loss"] for r in ma] == [r["train_loss"] for r in mb]


def test_frozen_head_stays_and_unfrozen_or_learned_moves(run_cli, tmp_path):
    from tkvr.run.checkpoint import read_checkpoint

    base = ["--epochs", "1", "--limit-batches", "2"]
    runs = {}
    for name, extra in (("frozen", []), ("unfrozen", ["--unfreeze-head"]), ("learned", ["--head", "learned"])):
        train(run_cli, tmp_path / name, *base, *extra)
        runs[name] = model_state(tmp_path / name / "checkpoints/last.pt")
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import encode_classes

    ckpt = read_checkpoint(str(tmp_path / "frozen"))
    text = encode_classes(build_backbone("tiny"), ckpt["classes"], ckpt["config"]["model"]["templates"])
    start = torch.nn.functional.normalize(text, dim=-1)  # what the head holds at step 0
    assert torch.equal(runs["frozen"]["head.weight"], start)  # bit-identical through training
    # the temperature starts at the model's own (tiny: open_clip's init, 1/0.07) and trains
    own = float(build_backbone("tiny").clip.logit_scale.detach().exp())
    assert own == pytest.approx(1 / 0.07, rel=1e-5)
    assert float(runs["frozen"]["head.logit_scale"].exp()) != pytest.approx(own, abs=1e-7)
    assert "head.logit_scale" not in runs["learned"]  # a plain linear layer has none
    assert not torch.allclose(runs["unfrozen"]["head.weight"], start)
    assert "head.bias" in runs["learned"] and runs["learned"]["head.bias"].abs().sum() > 0
    # a learned-head checkpoint from before the head became a plain linear layer (no head_form)
    # still evaluates with the head it trained with, and is refused for resuming
    from tkvr.base.errors import TkvrError
    from tkvr.run.checkpoint import check_resumable, config_of, load_model

    ck = torch.load(tmp_path / "learned" / "checkpoints/last.pt", weights_only=True)
    assert ck["head_form"] == "linear" and load_model(read_checkpoint(str(tmp_path / "learned")))[2].head.linear
    del ck["head_form"]
    from tkvr.run.checkpoint import checksum

    ck["checksum"] = checksum(ck, plain=False)  # as files of then: their checksum covered the tensors only
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    _, _, model = load_model(read_checkpoint(str(old)))
    assert not model.head.linear and float(model.head.scale) == pytest.approx(100.0)
    with pytest.raises(TkvrError, match="--resume .*earlier scaled-cosine"):
        check_resumable(old, config_of(ck))
    # the frozen matrix is stored once, not as optimizer state
    opt = torch.load(tmp_path / "frozen" / "checkpoints/last.pt", weights_only=True)["optimizer"]
    n_trainable = sum(len(g["params"]) for g in opt["param_groups"])
    trained = [k for k in runs["frozen"] if not k.startswith("head.") or k == "head.logit_scale"]
    assert n_trainable == len(trained) - _buffers(runs["frozen"])  # the head's matrix is not among them


def _buffers(state):
    from tkvr.model.backbones import build_backbone
    from tkvr.model.heads import Head, random_matrix
    from tkvr.model.settings import ModelConfig
    from tkvr.model.video_model import build_model

    m = build_model(build_backbone("tiny"), ModelConfig(temporal="tap", frames=2), Head(random_matrix(60, 64), "text"))
    return len([k for k, _ in m.named_buffers() if not k.startswith("head.")])


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    """SIGKILL while the next checkpoint is being written leaves the last one loadable."""
    ck = tmp_path / "last.pt"
    code = f"""
import sys, torch
from lightning_fabric import Fabric
from tkvr.run.checkpoint import save_checkpoint
fabric = Fabric(accelerator="cpu", devices=1)
big = torch.zeros(6_000_000)
for i in range(1000):
    save_checkpoint(fabric, {str(ck)!r}, {{"step": i, "weights": big + i}})
    print(i, flush=True)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "0"  # one checkpoint is complete
    tmp = tmp_path / ".last.pt.tmp"
    while not tmp.exists():  # the next write has begun
        pass
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    state = torch.load(ck, weights_only=True)
    assert torch.equal(state["weights"], torch.zeros(6_000_000) + state["step"])


class _Evil:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['TKVR_EVIL_MARK'], 'w').write('ran')",))


def test_checkpoint_that_runs_code_is_refused(run_cli, tmp_path, monkeypatch):
    mark = tmp_path / "ran.txt"
    monkeypatch.setenv("TKVR_EVIL_MARK", str(mark))
    torch.save({"format": 1, "config": _Evil()}, tmp_path / "evil.pt", pickle_module=pickle)
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "evil.pt")
    assert_user_error(code, err, "evil.pt", "refused")
    assert not mark.exists()


def test_limit_val_batches_scores_the_first_batches_of_each_validation(tiny_run):
    """--limit-val-batches 2 at batch 16 (conftest.fast): the final validation scored 32 clips of
    the 216, the report says so, config.yaml records the setting."""
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["final"]["num_samples"] == 32
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["optim"]["limit_val_batches"] == 2


def test_user_mistakes(run_cli, tmp_path):
    out = tmp_path / "run"
    train(run_cli, out, "--epochs", "1", "--limit-batches", "1")
    for views, word in (("0x3", "C must be 1 to 32"), ("4x2", "S must be 1 or 3")):
        code, _, err = run_cli("eval", "--checkpoint", out, "--views", views)
        assert_user_error(code, err, "--views", word)
    code, _, err = run_cli("train", *FAST, "--out", out)
    assert_user_error(code, err, "--out", "--resume auto")
    code, _, err = run_cli("train", *FAST, "--out", tmp_path / "b", "--batch-size", "10", "--device-batch", "4")
    assert_user_error(code, err, "--batch-size 10", "not divisible")
    code, _, err = run_cli("train", *FAST, "--out", tmp_path / "b", "--limit-val-batches", "0")
    assert_user_error(code, err, "--limit-val-batches must be >= 1")
    code, _, err = run_cli("train", *FAST, "--out", out, "--resume", "auto", "--backbone", "tiny-rn")
    assert_user_error(code, err, "--resume", "--backbone")
    # a file that is not a tkvr checkpoint (backbone weights)
    from tkvr.model.backbones import build_backbone

    torch.save(build_backbone("tiny").clip.state_dict(), tmp_path / "weights.pt")
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "weights.pt")
    assert_user_error(code, err, "not a tkvr checkpoint", "--pretrained PATH")
    # a checkpoint whose weights belong to another model
    ck = torch.load(out / "checkpoints/last.pt", weights_only=True)
    ck["config"]["model"]["backbone"] = "tiny-rn"
    ck.pop("checksum")  # as a file from before checksums: the shapes still refuse it
    torch.save(ck, tmp_path / "other.pt")
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "other.pt")
    assert_user_error(code, err, "does not fit")
    # eval data with other classes
    code, _, err = run_cli("eval", "--checkpoint", out, "--data", "toy@unseen", "--workers", "0")
    assert_user_error(code, err, "differ from the checkpoint", "--labels data")
    code, _, err = run_cli("eval", "--checkpoint", out, "--data", "toy@unseen", "--labels", "data", "--workers", "0",
                           "--json", tmp_path / "zs.json")
    assert code == 0, err
    assert json.loads((tmp_path / "zs.json").read_text())["num_samples"] == 18 * 4


def test_config_file_with_flags_overriding(run_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nlimit-batches: 1\nframes: 3\nseed: 5\n")
    code, _, err = run_cli("train", *FAST, "--config", cfg, "--out", tmp_path / "r", "--frames", "2")
    assert code == 0, err
    import yaml

    written = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert written["model"]["frames"] == 2 and written["optim"]["seed"] == 5 and written["optim"]["epochs"] == 1
    cfg.write_text("epoch: 1\n")
    code, _, err = run_cli("train", *FAST, "--config", cfg, "--out", tmp_path / "r2")
    assert_user_error(code, err, "--config", "'epoch' is not a flag")




@pytest.mark.slow
def test_ddp_two_processes_say_only_tkvrs_lines(tmp_path):
    """train with 2 CPU processes (gloo) in bf16-mixed: at default verbosity nothing of the
    libraries' own output reaches the user. (That eval with 2 processes sees each sample once, with
    the top-1 of 1 device, and says nothing of the libraries either: test_launch, on its run.)"""
    env = {**os.environ, "TKVR_CACHE": os.environ["TKVR_CACHE"]}
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "tkvr", "train", *FAST, "--out", str(run), "--epochs", "1", "--limit-batches", "2",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--precision", "bf16-mixed"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    said = r.stdout + r.stderr
    assert "run " in r.stdout and "final: top-1" in r.stdout  # tkvr's own lines
    for noise in LIBRARY_NOISE:  # Fabric's banners, its precision line, torch's deprecations, per rank
        assert noise not in said, (noise, said[-2000:])


def test_released_ttrans_and_randaugment_train_and_evaluate(run_cli, tmp_path):
    from tkvr.run.checkpoint import read_checkpoint

    out = tmp_path / "r"
    train(run_cli, out, "--epochs", "1", "--limit-batches", "2", "--temporal", "t-trans", "--temporal-layers", "1",
          "--t-trans-form", "released", "--randaugment", "clip")
    ck = read_checkpoint(str(out))
    assert ck["config"]["model"]["t_trans_form"] == "released" and ck["config"]["data"]["randaugment"] == "clip"
    assert "temporal.pos" in ck["model"] and "temporal.proj.weight" not in ck["model"]
    from tkvr.run.checkpoint import load_model

    assert load_model(ck)[2].temporal.form == "released"  # rebuilt from the checkpoint alone
    # resuming with the other form is refused: it shapes the model
    code, stdout, err = run_cli("train", *FAST, "--out", out, "--resume", "auto", "--epochs", "2",
                                "--temporal", "t-trans", "--temporal-layers", "1", "--t-trans-form", "near-tap")
    assert code == 2 and "--t-trans-form" in err


def test_template_augmentation_draws_templates_per_step(run_cli, tmp_path):
    """--template-mode augment: each step trains against one template's frozen classifier, drawn
    from (seed, step); eval scores with their average."""
    from tkvr.model.backbones import build_backbone
    from tkvr.model.heads import template_for_step
    from tkvr.model.text import encode_classes
    from tkvr.run.checkpoint import load_model, read_checkpoint

    tpl = ["a video of {}.", "a clip of {}.", "footage of {}."]
    flags = [a for t in tpl for a in ("--template", t)]
    runs = {}
    for name, seed in (("a", 0), ("b", 0)):
        train(run_cli, tmp_path / name, "--epochs", "1", "--limit-batches", "5", "--log-every", "1",
              "--template-mode", "augment", "--seed", seed, *flags)
        rows = list(csv.DictReader((tmp_path / name / "steps.csv").open()))
        runs[name] = [int(r["template"]) for r in rows]
        assert runs[name] == [template_for_step(seed, int(r["step"]), 3) for r in rows]
    assert len(runs["a"]) == 5 and len(set(runs["a"])) > 1  # different templates across steps
    assert runs["a"] == runs["b"]  # the same ones for the same seed
    assert [template_for_step(0, s, 3) for s in range(1, 21)] != [template_for_step(5, s, 3) for s in range(1, 21)]
    ckpt = read_checkpoint(str(tmp_path / "a"))
    assert ckpt["config"]["model"]["template_mode"] == "augment"
    text = build_backbone("tiny")
    bank = torch.stack([encode_classes(text, ckpt["classes"], [t]) for t in tpl])  # [K, C, D]
    torch.testing.assert_close(ckpt["model"]["head.bank"], bank)  # frozen through training
    _, _, model = load_model(ckpt)
    torch.testing.assert_close(model.head.weight, encode_classes(text, ckpt["classes"], tpl))  # the average
    z = torch.nn.functional.normalize(torch.randn(2, bank.shape[-1]), dim=-1)
    model.head.train()
    model.head.pick = 2
    s = model.head.scale.detach()  # the logit scale the run trained to
    torch.testing.assert_close(model.head(z), s * z @ bank[2].T)
    model.head.eval()
    torch.testing.assert_close(model.head(z), s * z @ model.head.weight.T)
    code, _, err = run_cli("train", *FAST, "--out", tmp_path / "one", "--template-mode", "augment", "--template", "{}")
    assert code == 2 and "two or more --template" in err and not (tmp_path / "one").exists()


def test_learnable_prompt_trains_its_context_and_nothing_of_the_text_encoder(run_cli, tmp_path):
    from tkvr.model.backbones import build_backbone
    from tkvr.run.checkpoint import load_model, read_checkpoint

    out = tmp_path / "coop"
    train(run_cli, out, "--epochs", "1", "--limit-batches", "3", "--template-mode", "learn", "--prompt-length", "4")
    ckpt = read_checkpoint(str(out))
    state = ckpt["model"]
    clip = build_backbone("tiny").clip  # the text tower the run started from (tiny builds identically)
    tower = {k[len("head.tower."):]: v for k, v in state.items() if k.startswith("head.tower.")}
    before = {**{f"token_embedding.{k}": v for k, v in clip.token_embedding.state_dict().items()},
              **{f"transformer.{k}": v for k, v in clip.transformer.state_dict().items()},
              **{f"ln_final.{k}": v for k, v in clip.ln_final.state_dict().items()},
              "positional_embedding": clip.positional_embedding, "text_projection": clip.text_projection}
    assert set(tower) == set(before)
    assert all(torch.equal(tower[k], before[k]) for k in before)  # nothing of the text encoder moved
    g = torch.Generator().manual_seed(0)
    start = torch.randn(4, clip.token_embedding.weight.shape[1], generator=g) * 0.02
    assert state["head.ctx"].shape == start.shape and not torch.allclose(state["head.ctx"], start)  # it trained
    # the checkpoint's classifier is the prompts through the tower with the trained context
    _, _, model = load_model(ckpt)
    opt = torch.load(out / "checkpoints/last.pt", weights_only=True)["optimizer"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "head.ctx" in names and not any(n.startswith("head.tower.") for n in names)
    assert sum(len(g["params"]) for g in opt["param_groups"]) == len(names)  # no tower weight in the optimiser
    torch.testing.assert_close(model.head.weight, state["head.weight"])
    torch.testing.assert_close(model.head.classifier(), state["head.weight"])
    from tkvr.model.cost import model_cost

    _, params_m = model_cost(model, 2, 32)  # eval's count: the tower only made the classifier
    tower_m = sum(v.numel() for k, v in state.items() if k.startswith("head.tower.")) / 1e6
    visual_m = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head.")) / 1e6
    head_m = (state["head.weight"].numel() + state["head.ctx"].numel() + 1) / 1e6  # + the logit scale
    assert tower_m > 0 and abs(params_m - (visual_m + head_m)) < 1e-6
    # new class names go behind the same learned context
    _, _, swapped = load_model(ckpt, classes=["a red circle moving left", "a blue square moving up"])
    assert swapped.head.weight.shape[0] == 2 and torch.equal(swapped.head.ctx, state["head.ctx"])


def test_timm_visual_tower_trains_with_a_text_head_and_alone(run_cli, tmp_path):
    """--visual timm:NAME (Table 3): a timm tower (random init offline) under CLIP's text head,
    through a trainable projection to the text width; the vision-only head reads it directly."""
    from tkvr.run.checkpoint import load_model, read_checkpoint

    base = ["--epochs", "1", "--limit-batches", "2", "--visual", "timm:test_resnet", "--no-visual-pretrained"]
    train(run_cli, tmp_path / "text", *base)
    train(run_cli, tmp_path / "alone", *base, "--head", "learned")
    text, alone = read_checkpoint(str(tmp_path / "text")), read_checkpoint(str(tmp_path / "alone"))
    assert text["model"]["visual.project.weight"].shape == (64, 96)  # timm width 96 -> tiny's text width 64
    assert text["model"]["head.weight"].shape[1] == 64
    assert "visual.project.weight" not in alone["model"] and alone["model"]["head.weight"].shape[1] == 96
    assert any(k.startswith("visual.trunk.") for k in text["model"])
    _, _, model = load_model(text)  # rebuilt from the checkpoint alone
    torch.testing.assert_close(model.visual.project.weight, text["model"]["visual.project.weight"])
    assert model.visual.preprocess_cfg["size"] == 160  # timm's own input size and normalisation
    opt = torch.load(tmp_path / "text" / "checkpoints/last.pt", weights_only=True)["optimizer"]
    lrs = sorted({g["initial_lr"] for g in opt["param_groups"]})
    assert lrs == pytest.approx([1e-4, 1e-3])  # the trunk at the backbone lr, the projection at x10
    assert text["best_top1"] >= 0 and "visual.trunk.fc.weight" not in text["model"]  # timm's classifier removed


def test_resume_keeps_one_record_of_each_step_and_epoch(run_cli, tmp_path):
    import csv

    run = tmp_path / "run"
    args = ["train", "--data", "toy", *fast(batch_size=4, limit_val_batches=None), "--epochs", "3", "--limit-batches", "3",
            "--log-every", "1", "--out", run]
    code, _, err = run_cli(*args, "--max-steps", "3")  # epoch 1 ends at step 3, its checkpoint written
    assert code == 0, err
    with (run / "steps.csv").open("a") as f:  # what a process killed in epoch 2 had logged after it
        f.write("2,4,5.0,1e-06,10,1.0,0.0,\n2,5,5.0,1e-06,10,1.1,0.0,\n")
    code, _, err = run_cli(*args, "--resume", "auto")  # epoch 2 again, from step 3
    assert code == 0, err
    logged = list(csv.DictReader((run / "steps.csv").open()))
    steps = [int(r["step"]) for r in logged]
    assert steps == list(range(1, 10)), steps
    # the clocks go on from the rows kept (step 3, epoch 1), not from 0 in the resumed process
    for column in ("wall_s", "data_wait_s"):
        clock = [float(r[column]) for r in logged]
        assert clock == sorted(clock) and clock[3] > clock[2] > 0, (column, clock)
    epochs = [float(r["wall_s"]) for r in csv.DictReader((run / "metrics.csv").open())]
    assert epochs == sorted(epochs) and epochs[1] > float(logged[2]["wall_s"]), epochs
    report = json.loads((run / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3] and report["final"]["num_samples"] == 216
    assert report["wall_s"] > epochs[-1] and "interrupted" not in report  # the run's whole time
    before = (run / "report.json").read_text()
    code, out, err = run_cli(*args, "--resume", "auto")  # a finished run
    assert code == 0 and "nothing to train" in out, err
    assert (run / "report.json").read_text() == before


def test_disk_full_while_logging_is_one_line(run_cli, tmp_path, monkeypatch):
    import errno

    from tkvr.run import logs

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(logs.CsvLog, "write", full)
    code, _, err = run_cli("train", "--data", "toy", *TINY_RUN, "--limit-batches", "1", "--log-every", "1",
                           "--out", tmp_path / "run")
    lines = err.strip().splitlines()
    assert code == 1 and lines == [f"tkvr: error: cannot write {tmp_path / 'run' / 'steps.csv'}: "
                                   "No space left on device"], err
    assert (tmp_path / "run" / "config.yaml").is_file()  # what was written before stays


def test_schedules_after_the_warm_up():
    """--schedule: the learning-rate factor per optimiser step, warm-up of 2 steps out of 10."""
    from tkvr.run.engine import lr_schedule

    def factors(kind):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, out = lr_schedule(opt, 2, 10, kind), []
        for _ in range(10):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    cosine, step, constant = factors("cosine"), factors("step"), factors("constant")
    assert cosine[:2] == step[:2] == constant[:2] == [0.5, 1.0]  # linear warm-up from 0
    assert constant[2:] == [1.0] * 8
    assert step[2:] == [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]  # x0.1 at 50%, x0.01 from 75%
    assert cosine[2] == 1.0 and abs(cosine[6] - 0.5) < 1e-12 and cosine[9] < cosine[8] < cosine[7]


def test_label_smoothing_is_the_smoothed_cross_entropy():
    from types import SimpleNamespace

    from tkvr.model.video_model import VideoModel, build
    from tkvr.run.settings import TrainConfig

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = torch.tensor([0, 2])
    logp = logits.log_softmax(-1)
    for eps in (0.0, 0.1, 0.5):
        policy = SimpleNamespace(objective="recognition", label_smoothing=eps)
        loss = VideoModel.loss(policy, lambda x: logits, None, y)
        expect = ((1 - eps) * -logp[[0, 1], y] + eps * -logp.mean(-1)).mean()  # by hand
        torch.testing.assert_close(loss, expect)
    cfg = TrainConfig.from_flags({"backbone": "tiny", "label_smoothing": 0.1})
    _, model = build(cfg.model, ["a", "b"], ["{}"], seed=cfg.optim.seed)
    assert model.label_smoothing == 0.1  # the setting reaches the model's loss


def test_save_every_keeps_epoch_checkpoints(run_cli, tmp_path):
    """--save-every 1 keeps each epoch's checkpoint; the logs record the rate each step used, and
    an epoch of fewer steps than --log-every logs every one of them."""
    import math

    from conftest import small_set

    data = small_set(tmp_path, bad=())
    code, _, err = run_cli("train", "--data", data, "--backbone", "tiny", "--frames", "2", "--batch-size", "1",
                           "--workers", "0", "--epochs", "2", "--warmup", "0", "--save-every", "1",
                           "--out", tmp_path / "run")
    assert code == 0, err
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["best.pt", "epoch_1.pt", "epoch_2.pt", "last.pt"]
    assert [torch.load(ckpts / f"epoch_{e}.pt", weights_only=True)["epoch"] for e in (1, 2)] == [1, 2]
    # 3 steps an epoch, cosine over 6 steps from 5e-6: each row logs the rate its step used
    cosine = [5e-6 * 0.5 * (1 + math.cos(math.pi * s / 6)) for s in range(6)]
    steps = list(csv.DictReader((tmp_path / "run" / "steps.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4, 5, 6]  # not only each epoch's last
    assert [float(r["lr"]) for r in steps] == pytest.approx(cosine, rel=1e-5)
    epochs = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in epochs] == pytest.approx([cosine[2], cosine[5]], rel=1e-5)


def test_resume_in_one_line_takes_the_runs_own_settings(run_cli, tmp_path):
    """`--out RUN --resume auto` alone continues a run trained with non-default flags; a flag
    given beside it that would change the model is refused by name."""
    import yaml
    from conftest import small_set

    data = small_set(tmp_path, bad=())
    code, out, err = run_cli("train", "--data", data, "--backbone", "tiny", "--frames", "2", "--batch-size", "2",
                             "--workers", "0", "--epochs", "1", "--warmup", "0", "--temporal", "token-t1d",
                             "--lr", "1e-4", "--out", tmp_path / "run")
    assert code == 0, err
    note = "note: 1 clip of 3 left out of each epoch (--batch-size 2 takes full batches; other clips each " \
        "epoch); --batch-size 1 would use all"
    assert note in out.splitlines()
    code, out, err = run_cli("train", "--out", tmp_path / "run", "--resume", "auto", "--epochs", "2")
    assert code == 0, err
    assert "with its own settings" in out and "given here: --epochs" in out
    assert out.count("left out of each epoch") == 1  # once a run, not once an epoch
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]  # one more epoch, of the same run
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (cfg["model"]["temporal"], cfg["optim"]["lr"], cfg["optim"]["epochs"]) == ("token-t1d", 1e-4, 2)
    code, _, err = run_cli("train", "--out", tmp_path / "run", "--resume", "auto", "--backbone", "tiny-rn")
    assert_user_error(code, err, "--backbone", "drop --backbone")


def test_batch_notes_count_what_the_loader_leaves_out(capsys):
    """The notes' numbers are the loader's: a set smaller than one batch is one short step; under
    DDP each rank takes an equal share of the permutation, then full batches of it."""
    from tkvr.data.loader import EpochSampler
    from tkvr.run.training import batch_notes

    def said(*args):
        batch_notes(*args)
        return capsys.readouterr().out.strip()

    assert said(15, 4, 1, False) == ("note: 3 clips of 15 left out of each epoch (--batch-size 4 takes full "
                                     "batches; other clips each epoch); --batch-size 3 would use all")
    assert said(3, 16, 1, False) == ("warning: the training set has 3 clips, fewer than one batch "
                                     "(--batch-size 16): each epoch is one short step of 3; give --batch-size "
                                     "3 or less for full steps")
    assert said(64, 16, 1, False) == "" and said(224, 8, 2, True) == ""
    assert said(15, 4, 1, False, True) == ""  # --limit-batches: a smoke run cuts the epoch anyway
    assert said(3, 16, 1, False, True).startswith("warning: the training set has 3 clips")
    assert said(17, 4, 2, True).startswith("note: 1 clip of 17 left out of each epoch (--device-batch 4 x 2 devices")
    for n, batch, world in ((17, 4, 2), (219, 8, 2), (50, 16, 3)):
        used = sum(len(EpochSampler(n, r, world)) // batch * batch for r in range(world))
        assert f"{n - used} clip" in said(n, batch, world, False)


def test_ctrl_c_leaves_a_report_marked_interrupted(run_cli, tmp_path, monkeypatch):
    """Ctrl-C in epoch 2: report.json says the run was interrupted after 1 epoch, with its history
    and how to resume it; the exit is the CLI's interrupt (130)."""
    from tkvr.run import engine

    real = engine.Trainer.train_epoch

    def ctrl_c_in_epoch_2(self, progress):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self, progress)

    monkeypatch.setattr(engine.Trainer, "train_epoch", ctrl_c_in_epoch_2)
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *fast(epochs=3, limit_batches=1), "--out", run)
    assert code == 130 and err.strip() == "tkvr: interrupted; everything written before it is kept", err
    report = json.loads((run / "report.json").read_text())
    assert report["interrupted"] is True and report["resume"] == f"tkvr train --out {run} --resume auto"
    assert (report["epochs"], report["steps"], [h["epoch"] for h in report["history"]]) == (1, 1, [1])
    assert report["final"] == {} and report["wall_s"] > 0
