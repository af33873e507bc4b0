"""Each setting declared once; everything validated before the first side effect; checkpoint-
dependent defaults resolved from the checkpoint (the eval fold)."""
import json
from pathlib import Path

import click
import pytest
import torch
from conftest import assert_user_error, fast, write_clip

TKVR = Path(__file__).resolve().parents[1] / "tkvr"
FAST = fast(batch_size=8, epochs=1, limit_batches=1)
# Flags that two declarations share on purpose, because they mean different things per command.
SAME_NAME_OTHER_MEANING = {
    "--batch-size": "train: the global batch; eval: videos per device and batch",
    "--labels": "eval: 'data' swaps in the eval data's names; predict: the new names themselves",
    "--out": "train and the protocols: a run folder; embed: the embeddings file",
    "--resume": "train: the checkpoint (or auto) to continue; predict: a switch, continue the --out file",
}


def commands():
    from tkvr.cli import cli

    return {name: cmd for name, cmd in cli.commands.items()}


def test_every_option_has_exactly_one_declaration():
    from tkvr.base.settings import declaration, leaves

    by_flag: dict[str, set] = {}
    for name, cmd in commands().items():
        cls = cmd.callback.__tkvr_config__
        fields = leaves(cls)
        options = [p for p in cmd.params if isinstance(p, click.Option) and p.name not in ("help", "config")]
        shown = {p.name for p in options}
        declared = {n for n, f in fields.items() if f.metadata.get("cli", True)}
        assert shown == declared, (name, shown ^ declared)  # no orphan option, no orphan setting
        assert len(shown) == len(options), name  # no option twice
        for p in options:
            f = fields[p.name]
            meta = f.metadata
            assert p.help == meta["help"], (name, p.name)
            if meta["choices"]:
                assert tuple(p.type.choices) == meta["choices"], (name, p.name)
            if not p.multiple and not meta["required"]:
                assert p.default == f.default, (name, p.name, p.default, f.default)
            for flag in p.opts:
                by_flag.setdefault(flag, set()).add(id(declaration(f)))
    shared = {flag for flag, decls in by_flag.items() if len(decls) > 1}
    assert shared == set(SAME_NAME_OTHER_MEANING), shared
    # the shared groups really are shared: one declaration behind each of these everywhere
    for flag in ("--json", "--workers", "--decoder", "--frames", "--views", "--seed", "--data", "--fold"):
        assert len(by_flag[flag]) == 1, flag


@pytest.mark.parametrize("cmd, args, word", [
    ("train", ["--views", "4by3"], "--views"),
    ("train", ["--frames", "0"], "--frames"),
    ("train", ["--label-fraction", "1.5"], "--label-fraction"),
    ("fewshot", ["--shots", "0,1"], "--shots"),
    ("fewshot", ["--shots", "one"], "--shots"),
    ("train", ["--backbone", "vit-huge-9000"], "--backbone"),
    ("train", ["--pretrained", "missing/weights.pt"], "--pretrained"),
    ("train", ["--temporal", "t1d"], "token-t1d"),
    ("zeroshot", ["--views", "0x1"], "--views"),
])
def test_bad_request_fails_before_anything_is_written(run_cli, tmp_path, cmd, args, word):
    out = tmp_path / "run"
    code, _, err = run_cli(cmd, "--data" if cmd != "zeroshot" else "--train", "toy" if cmd != "zeroshot" else "toy@seen",
                           *FAST, *args, "--out", out)
    assert_user_error(code, err, word)
    assert not out.exists()


def test_mismatched_embeddings_fail_before_anything_is_written(run_cli, tmp_path):
    code, _, err = run_cli("embed", "--classes", "a,b,c", "--backbone", "tiny", "--out", tmp_path / "abc.pt")
    assert code == 0, err
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--embeddings", tmp_path / "abc.pt", "--out",
                           tmp_path / "run")
    assert_user_error(code, err, "--embeddings", "does not match")
    assert not (tmp_path / "run").exists()


def test_bad_top_k_writes_no_json(run_cli, tmp_path):
    clip = write_clip(tmp_path / "c.mp4")
    code, _, err = run_cli("predict", clip, "--checkpoint", tmp_path / "nowhere", "--top-k", "0",
                           "--json", tmp_path / "p.json")
    assert_user_error(code, err, "--top-k")
    assert not (tmp_path / "p.json").exists()


def test_a_folder_without_checkpoint_is_not_a_run(run_cli, tmp_path):
    """A run that failed before its first checkpoint (config.yaml only) does not block a rerun."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("model: {}\n")
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--out", out)
    assert code == 0, err
    assert (out / "checkpoints" / "last.pt").is_file()
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--out", out)  # now it is one
    assert_user_error(code, err, "--out", "--resume auto")


def ucf_split(root: Path) -> Path:
    """A tiny UCF-101 layout: 2 classes, 3 folds; testlist01 holds 4 videos, testlist02 holds 2."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    names = {c: [f"{c}/v_{c}_g0{g}_c01.mp4" for g in range(1, 5)] for c in ("Archery", "Bowling")}
    for c, files in names.items():
        (root / "UCF-101" / c).mkdir(parents=True)
        for i, f in enumerate(files):
            write_clip(root / "UCF-101" / f, frames=8, size=32, seed=i)
    a, b = names["Archery"], names["Bowling"]
    folds = {1: (a[2:] + b[2:], a[:2] + b[:2]), 2: (a[:3] + b[:3], a[3:] + b[3:]), 3: (a[:2] + b[:2], a[2:] + b[2:])}
    for k, (train, test) in folds.items():
        (lists / f"trainlist0{k}.txt").write_text("".join(f"{f} {1 + f.startswith('Bowling')}\n" for f in train))
        (lists / f"testlist0{k}.txt").write_text("".join(f"{f}\n" for f in test))
    return root


def test_eval_scores_the_fold_the_checkpoint_was_trained_on(run_cli, tmp_path):
    data = ucf_split(tmp_path / "ucf")
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", data, "--fold", "2", *FAST, "--out", run)
    assert code == 0, err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["data"]["fold"] == 2
    code, _, err = run_cli("eval", "--checkpoint", run, "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["fold"] == 2 and report["num_samples"] == 2  # testlist02, not testlist01 (4 videos)
    code, _, err = run_cli("eval", "--checkpoint", run, "--fold", "1", "--workers", "0", "--json", tmp_path / "e1.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e1.json").read_text())
    assert report["fold"] == 1 and report["num_samples"] == 4  # asked for explicitly


def test_checkpoint_configs_of_the_earlier_layout_load():
    """Checkpoints written before the device group kept devices and --embeddings under run."""
    from tkvr.run.settings import TrainConfig

    cfg = TrainConfig.from_flags({"backbone": "tiny", "devices": 2, "precision": "bf16-mixed", "embeddings": "e.pt",
                                  "fold": 2, "out": "runs/x"})
    old = cfg.to_dict()
    device = old.pop("device")
    old["run"].update(device, embeddings=old["model"].pop("embeddings"))
    assert "device" not in old and "embeddings" not in old["model"]
    from tkvr.run.checkpoint import config_of

    assert config_of({"config": old}) == cfg
    assert config_of({"config": cfg.to_dict()}) == cfg == TrainConfig.from_dict(cfg.to_dict())


def test_the_script_api_refuses_what_the_command_line_refuses():
    from tkvr.base.errors import TkvrError
    from tkvr.run.settings import TrainConfig

    with pytest.raises(TkvrError) as e:
        TrainConfig.from_flags({"augment": "gpu", "temporal": "lstm"})
    assert "--augment 'gpu': choose one of auto, cpu, device" in str(e.value)
    assert "--temporal 'lstm'" in str(e.value)  # every problem, not only the first
    assert TrainConfig.from_flags({"augment": "device"}).data.augment == "device"


def test_model_settings_report_every_conflict():
    from tkvr.model.settings import ModelConfig

    problems = ModelConfig(head="random", template_mode="augment", objective="matching").validate()
    assert any("--template-mode augment shapes a text head" in p for p in problems), problems
    assert any("--objective matching" in p for p in problems), problems  # the second conflict too


def test_recipe_toy_sets_the_demos_values_where_no_flag_does(run_cli, tmp_path, monkeypatch):
    import yaml

    from tkvr.run.settings import TOY_RECIPE

    code, out, err = run_cli("train", "--data", "toy", "--recipe", "toy", "--backbone", "tiny", "--lr", "1e-3",
                             "--out", tmp_path / "run", "--dry-run")
    assert code == 0, err
    plan = yaml.safe_load(out[out.index("model:"):])
    flat = {k: v for g in ("model", "data", "optim") for k, v in plan[g].items()}
    assert flat["backbone"] == "tiny" and flat["lr"] == 1e-3  # flags win over the recipe
    for k in ("temporal", "frames", "batch_size", "new_lr_ratio", "warmup", "train_crop", "t_trans_form"):
        assert flat[k] == TOY_RECIPE[k], k
    assert plan["run"]["recipe"] == "toy"
    assert plan["run"]["from_recipe"] == sorted(set(TOY_RECIPE) - {"backbone", "lr"})  # where each came from
    code, out, err = run_cli("train", "--data", "toy", "--out", tmp_path / "run", "--dry-run")
    assert code == 2 and "cannot get the weights of ViT-B-16 (openai)" in err  # offline, none cached
    import tkvr.model.backbones

    monkeypatch.setattr(tkvr.model.backbones, "cached", lambda *a, **k: True)  # as if downloaded
    code, out, err = run_cli("train", "--data", "toy", "--out", tmp_path / "run", "--dry-run")
    plan = yaml.safe_load(out[out.index("model:"):])
    assert plan["weights"] == {"backbone": "ViT-B-16 openai, in the Hugging Face cache "
                                            "(timm/vit_base_patch16_clip_224.openai)"}
    assert plan["optim"]["lr"] == 5e-6 and plan["run"]["recipe"] == "paper" and plan["run"]["from_recipe"] is None


def test_counts_read_well():
    from tkvr.base.progress import count

    assert [count(2, "epoch"), count(1, "epoch"), count(2, "batch"), count(3, "class"), count(2, "video")] == [
        "2 epochs", "1 epoch", "2 batches", "3 classes", "2 videos"]


def test_typed_settings_are_parsed_once_on_every_path(tmp_path):
    """--views, --logit-scale, --shots and --logger hold their values, however they were set (a
    script, an assignment, a checkpoint's text); config.yaml writes back their text; text that
    does not parse is refused by validate with the flag named."""
    from tkvr.base.errors import TkvrError
    from tkvr.base.settings import Unparsed, freeze
    from tkvr.commands.fewshot import FewshotConfig
    from tkvr.run.settings import ALL_SHOTS, TrainConfig

    cfg = TrainConfig.from_flags({"views": "4x3", "logit_scale": "100", "logger": ["tensorboard,wandb", "wandb"]})
    assert cfg.data.views == (4, 3) and cfg.model.logit_scale == 100.0 and cfg.run.logger == ["tensorboard", "wandb"]
    d = cfg.to_dict()
    assert (d["data"]["views"], d["model"]["logit_scale"]) == ("4x3", "100")  # as typed, in config.yaml
    assert TrainConfig.from_dict(d) == cfg  # a checkpoint's text reads back to the same values
    cfg.data.views = "2x1"  # an assignment is parsed too
    assert cfg.data.views == (2, 1)
    assert TrainConfig.from_flags({"logit_scale": "learn"}).model.logit_scale == "learn"
    assert FewshotConfig(shots="1,5,all").shots == [1, 5, ALL_SHOTS]
    import dataclasses  # a typed value set again (a copy made with replace) stays as it is

    assert dataclasses.replace(FewshotConfig(shots="1,5,all")).shots == [1, 5, ALL_SHOTS]
    assert FewshotConfig(shots=["1", "5"]).shots == [1, 5]  # a YAML list of the words
    for flags, word in (({"views": "4y3"}, "--views '4y3' must look like CxS"),
                        ({"logit_scale": "-1"}, "--logit-scale '-1': use learn, fixed or a positive number")):
        with pytest.raises(TkvrError, match=word):
            TrainConfig.from_flags(flags)
        bad = TrainConfig(**{})
        setattr(bad.data if "views" in flags else bad.model, *next(iter(flags.items())))
        assert isinstance(bad.data.views if "views" in flags else bad.model.logit_scale, Unparsed)
    with pytest.raises(TkvrError, match="K 3 appears twice"):
        FewshotConfig(shots="3,3").validate()
    frozen = freeze(TrainConfig())
    with pytest.raises(TypeError):
        frozen.data.views = "1x1"


def test_config_yaml_records_what_auto_became_and_nothing_reads_it_back(run_cli, tiny_run, tmp_path):
    """config.yaml's `auto:` holds what this machine made of the automatic values; the groups keep
    the machine's own as given (a resumed run on another machine decides them afresh); --config of
    a run's config.yaml skips it."""
    import yaml

    from tkvr.data.loader import datasets
    from tkvr.data.settings import DataConfig
    from tkvr.data.specs import resolve
    from tkvr.data.video import Reading

    rec = yaml.safe_load((tiny_run / "config.yaml").read_text())
    auto = rec["auto"]
    assert auto["decoder"] in ("torchcodec", "pyav") and rec["data"]["decoder"] == "auto"
    assert auto["workers"] == 0 and auto["augment"] == rec["data"]["augment"] in ("cpu", "device")
    assert auto["precision"] == rec["device"]["precision"] != "auto"  # decided, in its group too
    code, out, err = run_cli("train", "--config", tiny_run / "config.yaml", "--out", tmp_path / "again", "--dry-run")
    assert code == 0, err
    plan = yaml.safe_load(out)
    assert plan["data"]["workers"] == 0 and plan["auto"]["decoder"] == auto["decoder"]
    # the layers below take decided values only: "auto" reaching them is a bug, not a default
    with pytest.raises(ValueError, match="decided settings"):
        datasets(DataConfig(), resolve("toy"), {"size": 32, "mean": (0,) * 3, "std": (1,) * 3}, frames=2, seed=0,
                 reading=Reading("pyav"))


@pytest.mark.parametrize("cmd", ["check", "predict", "eval", "train", "zeroshot"])
def test_every_command_with_views_refuses_views_that_do_not_parse(run_cli, tmp_path, cmd):
    args = {"check": ["x.mp4"], "predict": ["x.mp4", "--backbone", "tiny", "--labels", "a,b"],
            "eval": ["--checkpoint", tmp_path], "train": ["--out", tmp_path / "r"], "zeroshot": ["--out", tmp_path / "z"]}
    code, _, err = run_cli(cmd, *args[cmd], "--views", "4y3")
    assert_user_error(code, err, "--views '4y3' must look like CxS")
    assert not (tmp_path / "r").exists() and not (tmp_path / "z").exists()
