import subprocess
import sys

import pytest
import torch
from conftest import TINY_RUN, assert_user_error, write_clip


def test_help_lists_every_command_and_each_has_an_example(run_cli):
    """tkvr --help names every command; each command's --help shows an example (and its defaults)."""
    from tkvr.commands import COMMANDS

    code, out, _ = run_cli("--help")
    assert code == 0
    names = [c.name for c in COMMANDS]
    assert set(names) >= {"embed", "train", "eval", "fewshot", "zeroshot", "predict", "export", "check", "demo",
                          "prepare", "backbones", "plot", "convert"}
    for name in names:
        assert name in out, name
        code, out_, _ = run_cli(name, "--help")
        assert code == 0 and ("Example:" in out_ or "Examples:" in out_), name
    code, out, _ = run_cli("embed", "--help")
    assert "default: ViT-B/16" in out


def test_help_does_not_import_torch():
    """Four --help screens in one fresh interpreter: none of them imports torch."""
    code = ("import sys; from tkvr.cli import main\n"
            "for args in (['--help'], ['train', '--help'], ['eval', '--help'], ['fewshot', '--help']):\n"
            " try:\n  main(args)\n except SystemExit: pass\n"
            " assert 'torch' not in sys.modules, f'torch imported by {args}'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_train_rejects_unknown_temporal_and_backbone(run_cli, tmp_path):
    from conftest import assert_user_error

    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--temporal", "lstm", "--out", tmp_path / "r")
    assert_user_error(code, err, "--temporal", "lstm")
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "vit-huge-9000", "--out", tmp_path / "r")
    assert_user_error(code, err, "--backbone", "vit-huge-9000")


def test_unwritable_outputs_fail_before_the_work(run_cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    for args, words in (
        (["train", "--data", "toy", *TINY_RUN, "--out", tmp_path / "afile"], ["--out", "is a file"]),
        (["train", "--data", "toy", *TINY_RUN, "--out", "/proc/tkvr_run"], ["--out", "cannot write in /proc"]),
        (["eval", "--checkpoint", tmp_path / "none", "--json", tmp_path / "afile" / "e.json"], ["--json", "is a file"]),
        (["embed", "--classes", "a,b", "--backbone", "tiny", "--out", tmp_path], ["--out", "is a folder"]),
        (["check", "--data", "toy", "--json", "/proc/c.json"], ["--json", "cannot write"]),
    ):
        code, _, err = run_cli(*args)
        assert_user_error(code, err, *words)


NO_GPU = not torch.cuda.is_available()


# The user-mistake table: (command line, words the one line must hold). {tmp} is a fresh folder
# holding: afile (a file), list.yaml (a YAML list), fold.yaml (fold: one), pickled.pt (a pickle
# with an object), abc.pt (embeddings for classes a, b, c). Every row: exit 2, one line, no
# traceback, and no run folder {tmp}/run afterwards.
MISTAKES = [
    ("train --data toy --views 4by3", ["--views", "CxS"]),
    ("train --data toy --views 0x3", ["--views", "C must be 1 to 32"]),
    ("train --data toy --frames 0", ["--frames", ">= 1"]),
    ("train --data toy --label-fraction 1.5", ["--label-fraction", "(0, 1]"]),
    ("train --data toy --max-bad-fraction 2", ["--max-bad-fraction"]),
    ("train --data toy --epochs 0", ["--epochs"]),
    ("train --data toy --lr 0", ["--lr", "> 0"]),
    ("train --data toy --warmup -1", ["--warmup"]),
    ("train --data toy --eval-every 0", ["--eval-every"]),
    ("train --data toy --workers -1", ["--workers"]),
    ("train --data toy --fold 4", ["--fold", "1, 2 or 3"]),
    ("train --data toy --template-mode augment --head random", ["--template-mode augment", "--head is random"]),
    ("train --data toy --template-mode learn --unfreeze-head", ["--template-mode learn", "--unfreeze-head"]),
    ("train --data toy --template-mode learn --prompt-length 80", ["--prompt-length 80", "does not fit"]),
    ("train --data toy --template-mode blend", ["--template-mode", "blend"]),
    ("train --data toy --t-trans-form mine", ["--t-trans-form", "mine"]),
    ("train --data toy --visual resnet50", ["--visual", "timm:NAME"]),
    ("train --data toy --visual timm:no_such_net", ["--visual timm:no_such_net", "no model"]),
    ("train --data toy --visual timm:test_resnet", ["--visual timm:test_resnet", "--no-visual-pretrained"]),
    ("train --data toy --visual timm:test_resnet --temporal token-t1d", ["--temporal token-t1d", "tap or t-trans"]),
    ("train --data toy --batch-gather", ["--batch-gather", "--objective matching"]),
    ("train --data toy --text-online", ["--text-online", "--objective matching"]),
    ("train --data toy --objective matching --head random", ["--objective matching", "--head is random"]),
    ("train --data toy --template-mode augment --embeddings {tmp}/e.pt", ["--template-mode augment", "--embeddings"]),
    ("train --data toy --objective matching --text-online --template a_{{}} --template b_{{}}",
     ["--text-online", "give one --template"]),
    ("train --data toy --objective matching --text-online --text-encoder st:x", ["--text-online", "--text-encoder"]),
    ("train --data toy --batch-size 10 --device-batch 4", ["--batch-size 10", "not divisible"]),
    ("train --data toy --devices 0", ["--devices"]),
    ("train --data toy --temporal lstm", ["--temporal", "lstm"]),
    ("train --data toy --train-crop square", ["--train-crop", "square"]),
    ("train --data toy --template nobraces", ["--template", "{}"]),
    ("train --data toy --backbone vit-huge-9000", ["--backbone", "vit-huge-9000"]),
    ("train --data toy --temporal t1d", ["--temporal", "token-t1d"]),
    ("train --data toy --pretrained {tmp}/missing.pt", ["--pretrained", "no such file"]),
    ("train --data toy --pretrained {tmp}/pickled.pt", ["--pretrained", "refused"]),
    ("train --data toy --embeddings {tmp}/abc.pt", ["--embeddings", "does not match"]),
    ("train --data toy --out {tmp}/afile", ["--out", "is a file"]),
    ("train --data toy --out /proc/tkvr_run", ["--out", "cannot write"]),
    ("train --data {tmp}/nowhere", ["--data", "nowhere"]),
    ("train --data {tmp}/list.yaml", ["list.yaml", "mapping"]),
    ("train --data k400", ["--data k400", "--data-root"]),
    ("train --config {tmp}/fold.yaml --data toy", ["--fold", "one"]),
    ("train --config {tmp}/missing.yaml", ["--config", "does not exist"]),
    (f"train --data toy --accelerator {'gpu' if NO_GPU else 'tpu'}", ["--accelerator"]),
    (f"train --data toy --decode-device {'cuda' if NO_GPU else 'cpu'} --fold {'1' if NO_GPU else '0'}",
     ["--decode-device" if NO_GPU else "--fold"]),
    ("eval --checkpoint {tmp}/nowhere", ["--checkpoint", "no such file"]),
    ("eval --checkpoint {tmp}/nowhere --batch-size 0", ["--batch-size"]),
    ("eval --checkpoint {tmp}/nowhere --views 4x2", ["--views", "S must be 1 or 3"]),
    ("eval --checkpoint {tmp}/nowhere --labels foo", ["--labels", "'foo'"]),
    ("eval --checkpoint {tmp}/abc.pt", ["not a tkvr checkpoint"]),
    ("eval --checkpoint {tmp}/nowhere --json {tmp}/afile/e.json", ["--json", "is a file"]),
    ("eval --checkpoint {tmp}/nowhere --plot {tmp}/c.txt", ["--plot", ".png, .svg or .pdf"]),
    ("eval --checkpoint {tmp}/nowhere --per-class {tmp}/afile/p.csv", ["--per-class", "is a file"]),
    ("predict {tmp}/missing.mp4 --checkpoint {tmp}/nowhere", ["missing.mp4", "no such file"]),
    ("predict {tmp}/empty --backbone tiny --labels a,b", ["empty", "no video or image files", "1 other file"]),
    ("predict {tmp}/nolist.txt --backbone tiny --labels a,b", ["nolist.txt", "names no inputs"]),
    ("predict {tmp}/afile --checkpoint {tmp}/nowhere --top-k 0", ["--top-k"]),
    ("predict {tmp}/afile", ["--checkpoint RUN, or --backbone NAME"]),
    ("predict {tmp}/afile --backbone tiny", ["--backbone tiny needs --labels"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --checkpoint {tmp}/nowhere", ["not both"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --window 2 --stride 0", ["--stride 0", "positive"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --window -1", ["--window -1", "positive"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --stride 1", ["--stride", "give --window"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --window 2 --views 2x1", ["--views 2x1", "1xS"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --out {tmp}/tags.txt", ["--out", ".csv or .jsonl"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --out {tmp}/done.csv", ["--out", "already holds", "--resume"]),
    ("predict {tmp}/afile --backbone tiny --labels a,b --resume", ["--resume", "give --out"]),
    ("predict {tmp}/ds/jump/a.mp4 --backbone tiny --labels a,b --window 0.5", ["--window 0.5", "--frames 8 needs"]),
    ("predict {tmp}/ds/jump/a.mp4 --backbone tiny --labels a,a", ["appears twice"]),
    ("export --checkpoint {tmp}/nowhere --out {tmp}/m.tflite", ["--out", ".onnx", ".pt2"]),
    ("export --checkpoint {tmp}/nowhere --out {tmp}/m.onnx", ["--checkpoint", "no such file"]),
    ("embed --classes , --backbone tiny --out {tmp}/e.pt", ["--classes", "empty"]),
    ("embed --classes a,a --backbone tiny --out {tmp}/e.pt", ["appears twice"]),
    ("embed --classes a,b --backbone tiny --head lda --out {tmp}/e.pt", ["--head", "lda"]),
    ("embed --classes a,b --backbone tiny --out {tmp}", ["--out", "is a folder"]),
    ("embed --classes a,b --backbone ViT-B/32 --out {tmp}/e.pt", ["cannot get the weights", "--pretrained PATH"]),
    # refused from the architecture's width, before the (here unavailable) weights are looked for
    ("embed --classes imagenet --backbone ViT-B/16 --head orthogonal --out {tmp}/e.pt",
     ["--head orthogonal", "D=512 < C=1000"]),
    ("fewshot --data toy --shots 0,1", ["--shots"]),
    ("fewshot --data toy --shots one", ["--shots"]),
    ("fewshot --data toy --shots 17", ["--shots 17", "has only 16"]),
    ("fewshot --data toy --repeats 0", ["--repeats"]),
    ("fewshot --data toy --epoch-size 0", ["--epoch-size"]),
    ("zeroshot --train toy --eval toy@unseen", ["share 18 classes"]),
    ("zeroshot --protocol thirds", ["--protocol", "thirds"]),
    ("prepare --data toy --out {tmp}/run --gop 0", ["--gop"]),
    ("prepare --data toy --out {tmp}/run --crf 60", ["--crf", "0..51"]),
    ("prepare --data {tmp}/nowhere --out {tmp}/run", ["--data", "nowhere"]),
    ("prepare --data toy", ["Missing option '--out'"]),
    ("embed --backbone tiny --out {tmp}/e.pt", ["Missing option '--classes'"]),
    ("check", ["give --data DATASET", "files"]),
    ("eval", ["Missing option '--checkpoint'"]),
    ("train --data toy --augment gpu", ["--augment", "gpu"]),
    ("train --data toy --label-smoothing 1", ["--label-smoothing", "[0, 1)"]),
    ("train --data toy --label-smoothing 0.1 --objective matching", ["--label-smoothing", "matching"]),
    ("train --data toy --save-every 0", ["--save-every"]),
    ("train --data toy --schedule linear", ["--schedule", "linear"]),
    ("check --data toy --frames 0", ["--frames"]),
    ("check --data toy --split test", ["--split", "test"]),
    ("check --data toy --json /proc/c.json", ["--json", "cannot write"]),
    # every float flag refuses NaN and infinities; the bounds found by trying (issue 21)
    ("train --data toy --lr nan", ["--lr", "not a finite number"]),
    ("train --data toy --lr inf", ["--lr", "not a finite number"]),
    ("train --data toy --new-lr-ratio -inf", ["--new-lr-ratio", "not a finite number"]),
    ("train --data toy --weight-decay nan", ["--weight-decay", "not a finite number"]),
    ("train --data toy --grad-clip inf", ["--grad-clip", "not a finite number"]),
    ("train --data toy --test-scale nan", ["--test-scale", "not a finite number"]),
    ("train --data toy --logit-scale nan", ["--logit-scale", "positive number"]),
    ("train --config {tmp}/nanlr.yaml --data toy", ["--lr", "not a finite number"]),
    ("train --data toy --objective matching --batch-size 1", ["--objective matching", "--batch-size 1", "no pair"]),
    ("train --data toy --objective matching --batch-size 4 --device-batch 1", ["--device-batch 1", "no pair"]),
    ("train --data toy --prompt-length 4", ["--prompt-length 4", "--template-mode learn"]),
    ("fewshot --data toy --shots 1,1", ["--shots", "K 1 appears twice"]),
    ("fewshot --data toy --shots all,3,all", ["--shots", "K all appears twice"]),
    ("zeroshot --eval {tmp}/nowhere", ["--eval", "nowhere"]),
    ("zeroshot --train {tmp}/nowhere", ["--train", "nowhere"]),
    ("prepare --data {tmp}/ds --out {tmp}/ds/prep", ["--out", "inside the source dataset"]),
    ("prepare --data {tmp}/ds --out {tmp}/ds", ["--out", "inside the source dataset"]),
    ("prepare --data {tmp}/ds/dataset.yaml --out {tmp}/ds/prep", ["--out", "inside the source dataset"]),
    ("prepare --data {tmp}/nlimage --out {tmp}/run", ["lines.png", "line break"]),
    ("check --data {tmp}/twins", ["'brush hair' and 'brush_hair' both read 'brush hair'"]),
    ("train --data {tmp}/twins", ["'brush hair' and 'brush_hair'", "merge them or rename one"]),
    ("predict {tmp}/loop.mp4 --checkpoint {tmp}/nowhere", ["loop.mp4", "a symlink loop"]),
    ("predict {tmp}/dangling.mp4 --checkpoint {tmp}/nowhere", ["dangling.mp4", "a symlink to", "does not exist"]),
    ("eval --checkpoint {tmp}/raw.pt", ["raw.pt", "a raw pickle"]),
    ("train --data toy --pretrained {tmp}/raw.pt", ["--pretrained", "refused"]),
]


SMALL = {"train": ["--backbone", "tiny", "--frames", "2", "--workers", "0", "--epochs", "1", "--batch-size", "4",
                   "--limit-batches", "1"]}


SMALL["fewshot"] = SMALL["zeroshot"] = SMALL["train"]


@pytest.fixture(scope="module")
def mistakes_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mistakes")
    (tmp / "afile").write_text("x")
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.md").write_text("x")
    (tmp / "nolist.txt").write_text("# nothing listed\n\n")
    (tmp / "done.csv").write_text("file,label_1,score_1,error\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "fold.yaml").write_text("fold: one\n")
    (tmp / "nanlr.yaml").write_text("lr: .nan\n")
    from PIL import Image

    for cls in ("jump", "run"):  # a small class-folder dataset, and a YAML file in it
        write_clip(tmp / "ds" / cls / "a.mp4")
    (tmp / "ds" / "dataset.yaml").write_text("format: folders\ntrain: .\n")
    import os
    import pickle

    os.symlink(tmp / "loop.mp4", tmp / "loop.mp4")
    os.symlink(tmp / "gone.mp4", tmp / "dangling.mp4")
    (tmp / "raw.pt").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))  # not torch.save's format
    for cls in ("brush_hair", "brush hair"):  # two folders, one readable name
        write_clip(tmp / "twins" / cls / "a.mp4")
    (tmp / "nlimage" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp / "nlimage" / "cat" / "two\nlines.png")
    torch.save({"weights": _Pickled()}, tmp / "pickled.pt")
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import Made, encode_classes, save_embeddings

    bb = build_backbone("tiny")
    save_embeddings(tmp / "abc.pt", encode_classes(bb, ["a", "b", "c"], ["{}"]), ["a", "b", "c"], Made("tiny", None, tuple(["{}"]), "text"))
    return tmp


@pytest.mark.parametrize("line, words", MISTAKES, ids=[m[0].split(" --out")[0][:60] for m in MISTAKES])
def test_user_mistake_table(run_cli, mistakes_dir, line, words):
    args = line.format(tmp=mistakes_dir).split()
    extra = SMALL.get(args[0], []) + (["--out", str(mistakes_dir / "run")] if "--out" not in args and
                                      args[0] in ("train", "fewshot", "zeroshot") else [])
    code, _, err = run_cli(args[0], *extra, *args[1:])  # the row's own flags come last and win
    assert_user_error(code, err, *words)
    assert not (mistakes_dir / "run").exists()


class _Pickled:
    pass


def test_yaml_template_given_as_one_string(run_cli, tmp_path):
    (tmp_path / "c.yaml").write_text("template: 'a clip of {}.'\nepochs: 1\nlimit-batches: 1\n")
    code, _, err = run_cli("train", "--config", tmp_path / "c.yaml", "--data", "toy", *TINY_RUN, "--out", tmp_path / "r")
    assert code == 0, err
    import yaml

    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model"]["templates"] == ["a clip of {}."]


def test_a_torch_torchvision_mismatch_is_one_line(run_cli, monkeypatch):
    import tkvr.run.check

    def mismatch(source, **kw):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(tkvr.run.check, "check", mismatch)
    code, _, err = run_cli("check", "--data", "toy")
    assert_user_error(code, err, "torch and torchvision do not match", "pip install --force-reinstall")


def test_shell_completion_comes_from_click():
    import os
    import subprocess
    import sys

    env = {**os.environ, "_TKVR_COMPLETE": "bash_source"}
    r = subprocess.run([sys.executable, "-c", "from tkvr.cli import main; main()"], capture_output=True, text=True,
                       env=env)
    assert "_tkvr_completion" in r.stdout and "complete " in r.stdout, r.stdout + r.stderr


def test_help_lists_options_in_the_groups_of_config_yaml(run_cli):
    code, out, _ = run_cli("fewshot", "--help")
    assert code == 0
    heads = [out.index(h) for h in ("fewshot options:", "Model:", "Data:", "Optimisation:", "Run:", "Device:")]
    assert heads == sorted(heads)  # the command's own first, then as config.yaml groups them
    assert heads[0] < out.index("--shots TEXT") < heads[1]
    assert heads[3] < out.index("--lr ") < heads[4] and heads[1] < out.index("--temporal ") < heads[2]
    assert heads[5] < out.index("--precision ")
    assert "--shots 1,3,5,all" in out  # the example shows the default
