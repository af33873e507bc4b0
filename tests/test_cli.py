import subprocess
import sys

import pytest


def test_help_lists_every_command(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for name in ("embed", "train", "eval", "fewshot", "zeroshot", "predict"):
        assert name in out


def test_command_help_shows_defaults_and_example(run_cli):
    code, out, _ = run_cli("embed", "--help")
    assert code == 0
    assert "Example:" in out and "default: ViT-B/16" in out


@pytest.mark.parametrize("name", ["train", "eval", "fewshot", "zeroshot", "predict"])
def test_unbuilt_commands_say_so(run_cli, name):
    code, out, err = run_cli(name)
    assert code == 1
    assert "not built yet" in err


def test_help_does_not_import_torch():
    code = "import sys; from tkvr.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules, 'torch imported by --help'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
