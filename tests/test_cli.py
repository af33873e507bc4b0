import subprocess
import sys

import pytest


def test_help_lists_every_command(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for name in ("embed", "train", "eval", "fewshot", "zeroshot", "predict", "check", "demo", "prepare"):
        assert name in out


def test_command_help_shows_defaults_and_example(run_cli):
    code, out, _ = run_cli("embed", "--help")
    assert code == 0
    assert "Example:" in out and "default: ViT-B/16" in out


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["eval", "--help"], ["fewshot", "--help"]])
def test_help_does_not_import_torch(args):
    code = f"import sys; from tkvr.cli import main\ntry:\n main({args!r})\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules, 'torch imported by --help'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["embed", "check", "prepare", "train", "eval", "predict", "fewshot", "zeroshot",
                                  "demo"])
def test_every_built_command_has_help_with_an_example(run_cli, name):
    code, out, _ = run_cli(name, "--help")
    assert code == 0 and "Example:" in out


def test_train_rejects_unknown_temporal_and_backbone(run_cli, tmp_path):
    from conftest import assert_user_error

    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--temporal", "lstm", "--out", tmp_path / "r")
    assert_user_error(code, err, "--temporal", "lstm")
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "vit-huge-9000", "--out", tmp_path / "r")
    assert_user_error(code, err, "--backbone", "vit-huge-9000")
