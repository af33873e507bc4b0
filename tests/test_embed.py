import pickle
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import assert_user_error, assert_wrote

from tkvr.base.errors import TkvrError
from tkvr.data.classes import resolve_classes
from tkvr.model.text import Made, encode_classes, load_embeddings, save_embeddings


def test_text_embeddings_unit_norm_and_in_file_order(tiny, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("riding a bike\nplaying guitar\ndrinking beer\n")
    classes = resolve_classes(str(labels))
    assert classes == ["riding a bike", "playing guitar", "drinking beer"]
    emb = encode_classes(tiny, classes, ["a video of a person {}."])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    for i, c in enumerate(classes):  # row i is class i, encoded on its own
        torch.testing.assert_close(emb[i], encode_classes(tiny, [c], ["a video of a person {}."])[0])
    assert not torch.allclose(emb[0], emb[1])


def test_templates_are_averaged(tiny):
    a = encode_classes(tiny, ["x", "y"], ["a photo of {}."])
    b = encode_classes(tiny, ["x", "y"], ["a video of {}."])
    both = encode_classes(tiny, ["x", "y"], ["a photo of {}.", "a video of {}."])
    torch.testing.assert_close(both, torch.nn.functional.normalize(a + b, dim=-1))


def test_csv_labels_and_builtin_lists(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("id,name\n1,b\n0,a\n2,c\n")
    assert resolve_classes(str(f)) == ["a", "b", "c"]
    k400 = resolve_classes("k400")
    assert len(k400) == 400 and k400[0] == "abseiling"
    assert resolve_classes(" x , y ") == ["x", "y"]
    many = [f"class number {i}" for i in range(40)]  # longer than a file name may be
    assert resolve_classes(",".join(many)) == many


def test_embed_cli_writes_loadable_file(run_cli, tmp_path):
    out = tmp_path / "e.pt"
    code, stdout, err = run_cli("embed", "--classes", "jumping,running,swimming", "--backbone", "tiny",
                                "--template", "a video of {}.", "--template", "a clip of {}.", "--out", out)
    assert code == 0, err
    assert "[3, 64]" in stdout
    data = torch.load(out, weights_only=True)
    assert data["classes"] == ["jumping", "running", "swimming"]
    assert data["embeddings"].dtype == torch.float32 and data["embeddings"].shape == (3, 64)
    assert data["templates"] == ["a video of {}.", "a clip of {}."]
    assert data["backbone"] == "tiny" and data["head"] == "text"
    again = load_embeddings(out, classes=["jumping", "running", "swimming"], dim=64)
    assert torch.equal(again["embeddings"], data["embeddings"])


@pytest.mark.parametrize("head", ["random", "orthogonal"])
def test_embed_cli_baseline_heads(run_cli, tmp_path, head):
    out = tmp_path / f"{head}.pt"
    code, _, err = run_cli("embed", "--classes", "a,b,c,d", "--backbone", "tiny", "--head", head, "--out", out)
    assert code == 0, err
    w = torch.load(out, weights_only=True)["embeddings"]
    if head == "orthogonal":
        torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.load(out, weights_only=True)["head"] == head


def test_embed_plot(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "corr.png"
    code, stdout, err = run_cli("embed", "--classes", "a,b,c", "--backbone", "tiny", "--out", tmp_path / "e.pt",
                                "--plot", png)
    assert code == 0, err
    assert_wrote(stdout, tmp_path / "e.pt", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mismatched_file_refused(tiny, tmp_path):
    path = tmp_path / "e.pt"
    save_embeddings(path, torch.eye(3, 64), ["a", "b", "c"], Made("tiny", None, tuple(["{}"]), "text"))
    with pytest.raises(TkvrError, match="width D=64 but the model's is 512"):
        load_embeddings(path, dim=512)
    with pytest.raises(TkvrError, match="3 classes, the data has 2"):
        load_embeddings(path, classes=["a", "b"])
    with pytest.raises(TkvrError, match="another order"):
        load_embeddings(path, classes=["b", "a", "c"])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(TkvrError, match="not a tkvr embeddings file"):
        load_embeddings(tmp_path / "other.pt")


class _Evil:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['TKVR_EVIL_MARK'], 'w').write('ran')",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    mark = tmp_path / "ran.txt"
    monkeypatch.setenv("TKVR_EVIL_MARK", str(mark))
    evil = tmp_path / "evil.pt"
    torch.save({"embeddings": _Evil()}, evil, pickle_module=pickle)
    with pytest.raises(TkvrError, match="was refused"):
        load_embeddings(evil)
    assert not mark.exists()


@pytest.mark.parametrize("args,words", [
    (["--classes", "a,b", "--backbone", "resnet9000"], ["--backbone", "resnet9000"]),
    (["--classes", "missing_labels.txt", "--backbone", "tiny"], ["--classes", "missing_labels.txt"]),
    (["--classes", ",", "--backbone", "tiny"], ["--classes", "empty"]),
    (["--classes", "", "--backbone", "tiny"], ["--classes", "empty"]),
    (["--classes", "a,b,a", "--backbone", "tiny"], ["--classes", "'a' appears twice"]),
    (["--classes", "a,b", "--backbone", "tiny", "--template", "a video of"], ["--template", "{}"]),
    (["--classes", "a,b", "--backbone", "tiny", "--head", "lda"], ["--head"]),
    (["--classes", "a,b", "--backbone", "tiny", "--pretrained", "nowhere/w.pt"], ["--pretrained", "no such file"]),
])
def test_embed_user_mistakes(run_cli, tmp_path, args, words):
    code, _, err = run_cli("embed", *args, "--out", tmp_path / "e.pt")
    assert_user_error(code, err, *words)
    assert not (tmp_path / "e.pt").exists()


def test_empty_labels_file(run_cli, tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("\n\n")
    code, _, err = run_cli("embed", "--classes", f, "--backbone", "tiny", "--out", tmp_path / "e.pt")
    assert_user_error(code, err, "empty.txt", "empty")


def test_console_script_entry_point(tmp_path):
    """The installed entry point itself (python -m tkvr): a user mistake is one line, exit 2."""
    r = subprocess.run([sys.executable, "-m", "tkvr", "embed", "--classes", "a,a", "--backbone", "tiny",
                        "--out", str(tmp_path / "e.pt")], capture_output=True, text=True)
    assert_user_error(r.returncode, r.stderr, "appears twice")


def test_class_names_words_or_as_released(run_cli, tmp_path):
    """--class-names words splits joined words; released keeps them as the released label lists
    do (UCF-101's 'ApplyEyeMakeup'); both turn underscores into spaces (HMDB-51's 'brush hair')."""
    from tkvr.data.classes import prompt_name

    assert [prompt_name("ApplyEyeMakeup"), prompt_name("ApplyEyeMakeup", "released")] == [
        "Apply Eye Makeup", "ApplyEyeMakeup"]
    assert prompt_name("brush_hair", "released") == prompt_name("brush_hair") == "brush hair"
    rows = {}
    for style in ("words", "released"):
        code, _, err = run_cli("embed", "--classes", "ApplyEyeMakeup,brush_hair", "--backbone", "tiny",
                               "--class-names", style, "--out", tmp_path / f"{style}.pt")
        assert code == 0, err
        rows[style] = torch.load(tmp_path / f"{style}.pt", weights_only=True)["embeddings"]
    assert not torch.allclose(rows["words"][0], rows["released"][0])  # another prompt
    torch.testing.assert_close(rows["words"][1], rows["released"][1])  # the same prompt
    code, out, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--class-names", "released",
                             "--dry-run")
    assert code == 0 and yaml.safe_load(out)["model"]["class_names"] == "released", err
    code, _, err = run_cli("train", "--data", "toy", "--class-names", "camel", "--dry-run")
    assert_user_error(code, err, "--class-names")
