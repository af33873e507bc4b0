"""Faults and mistakes as users meet them: real-world file quirks, corrupt files, bad flags, kills.
Every user mistake ends in one line and exit 2; every fault keeps what was already written."""
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, write_clip, write_divx_avi

FAST = ["--backbone", "tiny", "--frames", "2", "--batch-size", "4", "--workers", "0", "--epochs", "1",
        "--warmup", "0"]


def list_dataset(root, files: dict):
    """A list-file dataset: files = {name: class}, used as both train and val."""
    classes = sorted(set(files.values()))
    (root / "labels.txt").write_text("".join(c + "\n" for c in classes))
    lines = "".join(f"{name} {classes.index(c)}\n" for name, c in files.items())
    (root / "train.txt").write_text(lines)
    (root / "val.txt").write_text(lines)
    return root


# ---------------------------------------------------------------- 1. real HMDB-51 AVIs
@pytest.mark.parametrize("decoder", ["pyav", "torchcodec"])
def test_divx_placeholder_packet_reads_every_frame(tmp_path, decoder):
    from tkvr.data.loader import read_clip
    from tkvr.data.specs import Sample
    from tkvr.data.video import VideoFile

    path = write_divx_avi(tmp_path / "brush_hair.avi", frames=10)
    import av

    with av.open(str(path)) as c:
        decoded = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in c.decode(video=0)]
    assert len(decoded) == 10
    v = VideoFile(path, decoder)
    x = v.read([0, len(v) - 1])  # the packet count says 11; frame 10 does not exist
    assert torch.equal(x[1], decoded[-1]) and len(v) == 10
    v.close()
    for _ in range(40):  # training draws anywhere, the last frame included
        read_clip(Sample(str(path), 0), 8, train=True, decoder=decoder)
    clip = read_clip(Sample(str(path), 0), 8, train=False, clips=4, decoder=decoder)  # 4x eval views
    assert clip.shape == (4, 8, 3, 32, 32)


def test_latin1_metadata_opens(tmp_path):
    from tkvr.data.video import VideoFile

    path = write_divx_avi(tmp_path / "clip.avi", frames=6, placeholder=False, title="café")
    assert b"caf\xe9 " in path.read_bytes()
    for decoder in ("pyav", "torchcodec"):
        v = VideoFile(path, decoder)
        assert len(v) == 6 and v.read([5]).shape == (1, 3, 32, 32)
        v.close()


def test_check_reads_the_last_frame(run_cli, tmp_path):
    """check reads what training reads: a file whose end is damaged fails check."""
    data = list_dataset(tmp_path, {"a.avi": "x", "b.avi": "y"})
    write_divx_avi(data / "a.avi", frames=10)
    write_divx_avi(data / "b.avi", frames=10)
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    assert code == 0, out + err
    assert json.loads((tmp_path / "c.json").read_text())["unreadable"] == []
    raw = (data / "b.avi").read_bytes()
    (data / "b.avi").write_bytes(raw[: len(raw) * 2 // 3])  # the last third is gone
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    report = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and report["unreadable"] == [str(data / "b.avi")], out


# ---------------------------------------------------------------- 2. batches of unreadable videos only
def small_set(tmp_path, bad=("bad.mp4",)):
    files = {name: "x" for name in bad}
    files.update({"a.mp4": "x", "b.mp4": "y", "c.mp4": "y"})
    (tmp_path / "data").mkdir()
    data = list_dataset(tmp_path / "data", files)
    for i, name in enumerate(("a.mp4", "b.mp4", "c.mp4")):
        write_clip(data / name, frames=8, size=32, seed=i)
    for name in bad:
        (data / name).write_bytes(bytes(range(256)) * 8)  # not a video
    return data


def test_eval_with_a_batch_of_unreadable_videos_only(run_cli, tmp_path):
    data = small_set(tmp_path)
    run = tmp_path / "run"
    code, out, err = run_cli("train", "--data", data, *FAST, "--batch-size", "1", "--limit-batches", "1",
                             "--max-bad-fraction", "1.0", "--out", run)
    assert code == 0, err  # the sanity validation's first batch is the unreadable video alone
    code, out, err = run_cli("eval", "--checkpoint", run, "--batch-size", "1", "--workers", "0",
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["unreadable"] == [str(data / "bad.mp4")] and report["num_samples"] == 3


# ---------------------------------------------------------------- 3. worker errors, the replacement pool
def test_bad_videos_are_never_replacements(run_cli, tmp_path):
    """Six unreadable videos and one good one in a class: every draw ends on the good one."""
    data = small_set(tmp_path, bad=tuple(f"bad{i}.mp4" for i in range(6)))
    code, out, err = run_cli("train", "--data", data, *FAST, "--batch-size", "3", "--max-bad-fraction", "1.0",
                             "--out", tmp_path / "run")
    assert code == 0, err
    unreadable = (tmp_path / "run" / "unreadable.txt").read_text().split()
    assert sorted(unreadable) == sorted(str(data / f"bad{i}.mp4") for i in range(6))


def test_error_inside_a_worker_is_one_line(run_cli, tmp_path):
    data = small_set(tmp_path)
    (data / "a.mp4").write_bytes(b"\x00" * 100)  # now every video of class x is unreadable
    code, _, err = run_cli("train", "--data", data, *FAST, "--workers", "1", "--max-bad-fraction", "1.0",
                           "--out", tmp_path / "run")
    assert_user_error(code, err, "every training video of class 'x' is unreadable")


# ---------------------------------------------------------------- 4. the bad-file budget under DDP
def tkvr_process(*args):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tkvr", *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ))
    return r.returncode, r.stdout, r.stderr


@pytest.mark.slow
def test_bad_file_budget_and_list_are_global_under_ddp(tmp_path):
    data = small_set(tmp_path, bad=tuple(f"bad{i}.mp4" for i in range(5)))  # 5 of 8 training videos
    ddp = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    for extra in ([], ddp):  # 62% unreadable > 50%: refused by one process and by two
        code, _, err = tkvr_process("train", "--data", data, *FAST, "--batch-size", "2", "--max-bad-fraction", "0.5",
                                    *extra, "--out", tmp_path / f"refused{len(extra)}")
        assert code == 1 and "5 of 8 training videos are unreadable" in err and "Traceback" not in err, err
        assert "all listed in" in err and "--data ..." not in err, err  # a runtime fault, said plainly
    run = tmp_path / "run"
    code, _, err = tkvr_process("train", "--data", data, *FAST, "--batch-size", "2", "--max-bad-fraction", "1.0",
                                *ddp, "--out", run)
    assert code == 0, err[-3000:]
    assert sorted((run / "unreadable.txt").read_text().split()) == sorted(str(data / f"bad{i}.mp4") for i in range(5))
    # eval with 2 processes and batches of one: whole shards of unreadable videos
    code, _, err = tkvr_process("eval", "--checkpoint", run, "--batch-size", "1", "--workers", "0", *ddp,
                                "--json", tmp_path / "e.json")
    assert code == 0, err[-3000:]
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["num_samples"] == 3 and len(report["unreadable"]) == 5


# ---------------------------------------------------------------- 5. corrupt files that looked fine
def write_faststart_mp4(path, frames=48):
    """An H.264 MP4 with its index (moov) before the frames, as web downloads have."""
    import av
    import numpy as np

    out = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
    s = out.add_stream("libx264", rate=8)
    s.width = s.height = 64
    s.pix_fmt, s.options = "yuv420p", {"g": "8"}
    for t in range(frames):
        img = (np.random.RandomState(t).rand(64, 64, 3) * 255).astype(np.uint8)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


@pytest.mark.parametrize("decoder", ["torchcodec", "pyav"])
def test_cut_mp4_and_renamed_jpeg_are_unreadable(run_cli, tmp_path, decoder):
    from conftest import write_jpeg

    from tkvr.data.video import UnreadableVideo, VideoFile

    data = list_dataset(tmp_path, {"whole.mp4": "x", "cut.mp4": "x", "photo.mp4": "y"})
    raw = write_faststart_mp4(data / "whole.mp4").read_bytes()
    (data / "cut.mp4").write_bytes(raw[: len(raw) * 3 // 10])  # the index survives, 70% of the frames do not
    write_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8), data / "photo.jpg").rename(data / "photo.mp4")
    assert len(VideoFile(data / "whole.mp4", decoder)) == 48
    with pytest.raises(UnreadableVideo, match="cut short: [0-9]+ of the 48 frames"):
        VideoFile(data / "cut.mp4", decoder)
    with pytest.raises(UnreadableVideo, match="a JPEG image, not a video"):
        VideoFile(data / "photo.mp4", decoder)
    code, _, _ = run_cli("check", "--data", data, "--decoder", decoder, "--workers", "0", "--json", tmp_path / "c.json")
    report = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and sorted(report["unreadable"]) == sorted([str(data / "cut.mp4"), str(data / "photo.mp4")])


def test_hls_playlist_named_mp4_is_not_followed(tmp_path):
    from tkvr.data.video import UnreadableVideo, VideoFile

    target = write_clip(tmp_path / "other.mp4")
    (tmp_path / "clip.mp4").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n")
    (tmp_path / "list.mp4").write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    for decoder in ("torchcodec", "pyav"):
        with pytest.raises(UnreadableVideo, match="an HLS playlist, not a video"):
            VideoFile(tmp_path / "clip.mp4", decoder)
        with pytest.raises(UnreadableVideo, match="an FFmpeg concat list, not a video"):
            VideoFile(tmp_path / "list.mp4", decoder)


# ---------------------------------------------------------------- 6. output failures
def test_unwritable_outputs_fail_before_the_work(run_cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    for args, words in (
        (["train", "--data", "toy", *FAST, "--out", tmp_path / "afile"], ["--out", "is a file"]),
        (["train", "--data", "toy", *FAST, "--out", "/proc/tkvr_run"], ["--out", "cannot write in /proc"]),
        (["eval", "--checkpoint", tmp_path / "none", "--json", tmp_path / "afile" / "e.json"], ["--json", "is a file"]),
        (["embed", "--classes", "a,b", "--backbone", "tiny", "--out", tmp_path], ["--out", "is a folder"]),
        (["check", "--data", "toy", "--json", "/proc/c.json"], ["--json", "cannot write"]),
    ):
        code, _, err = run_cli(*args)
        assert_user_error(code, err, *words)


@pytest.mark.parametrize("how", ["disk full", "swallowed"])
def test_checkpoint_write_fault_keeps_the_previous_one(run_cli, tmp_path, monkeypatch, how):
    """The third checkpoint write fails (epoch 2): one line, exit 1, epoch 1's checkpoint whole."""
    import errno

    from lightning_fabric import Fabric

    real, calls = Fabric.save, []

    def save(self, path, state, *a, **k):
        calls.append(path)
        if len(calls) < 3:
            return real(self, path, state, *a, **k)
        if how == "disk full":
            Path(path).write_bytes(b"PK\x03\x04 what fitted")  # a full disk takes part of the file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        # Lightning's atomic save can swallow a PermissionError: nothing written, nothing raised

    monkeypatch.setattr(Fabric, "save", save)
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--epochs", "2", "--limit-batches", "1", "--out", run)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "cannot write checkpoint" in lines[0], err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert not list((run / "checkpoints").glob(".*")), "a partial checkpoint was left behind"


# ---------------------------------------------------------------- 7-9. templates, other tracebacks, silent exits
NO_GPU = not torch.cuda.is_available()
# The user-mistake table: (command line, words the one line must hold). {tmp} is a fresh folder
# holding: afile (a file), list.yaml (a YAML list), fold.yaml (fold: one), pickled.pt (a pickle
# with an object), abc.pt (embeddings for classes a, b, c). Every row: exit 2, one line, no
# traceback, and no run folder {tmp}/run afterwards.
MISTAKES = [
    ("train --data toy --views 4by3", ["--views", "CxS"]),
    ("train --data toy --views 0x3", ["--views", "C must be >= 1"]),
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
    ("train --config {tmp}/missing.yaml", ["--config", "no such file"]),
    (f"train --data toy --accelerator {'gpu' if NO_GPU else 'tpu'}", ["--accelerator"]),
    (f"train --data toy --decode-device {'cuda' if NO_GPU else 'cpu'} --fold {'1' if NO_GPU else '0'}",
     ["--decode-device" if NO_GPU else "--fold"]),
    ("eval --checkpoint {tmp}/nowhere", ["--checkpoint", "no such file"]),
    ("eval --checkpoint {tmp}/nowhere --batch-size 0", ["--batch-size"]),
    ("eval --checkpoint {tmp}/nowhere --views 4x2", ["--views", "S must be 1 or 3"]),
    ("eval --checkpoint {tmp}/nowhere --labels foo", ["--labels", "'foo'"]),
    ("eval --checkpoint {tmp}/abc.pt", ["not a tkvr checkpoint"]),
    ("eval --checkpoint {tmp}/nowhere --json {tmp}/afile/e.json", ["--json", "is a file"]),
    ("predict {tmp}/missing.mp4 --checkpoint {tmp}/nowhere", ["missing.mp4", "no such file"]),
    ("predict {tmp} --checkpoint {tmp}/nowhere", ["is a folder"]),
    ("predict {tmp}/afile --checkpoint {tmp}/nowhere --top-k 0", ["--top-k"]),
    ("embed --classes , --backbone tiny --out {tmp}/e.pt", ["--classes", "empty"]),
    ("embed --classes a,a --backbone tiny --out {tmp}/e.pt", ["appears twice"]),
    ("embed --classes a,b --backbone tiny --head lda --out {tmp}/e.pt", ["--head", "lda"]),
    ("embed --classes a,b --backbone tiny --out {tmp}", ["--out", "is a folder"]),
    ("embed --classes a,b --backbone ViT-B/32 --out {tmp}/e.pt", ["cannot get the weights", "--pretrained PATH"]),
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
    ("check", ["Missing option '--data'"]),
    ("eval", ["Missing option '--checkpoint'"]),
    ("train --data toy --augment gpu", ["--augment", "gpu"]),
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
    from tkvr.model import build_backbone
    from tkvr.text import encode_classes, save_embeddings

    bb = build_backbone("tiny")
    save_embeddings(tmp / "abc.pt", encode_classes(bb, ["a", "b", "c"], ["{}"]), ["a", "b", "c"], "tiny", None,
                    ["{}"], "text")
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
    code, _, err = run_cli("train", "--config", tmp_path / "c.yaml", "--data", "toy", *FAST, "--out", tmp_path / "r")
    assert code == 0, err
    import yaml

    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model"]["templates"] == ["a clip of {}."]


def test_predict_says_when_files_did_not_read(run_cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--limit-batches", "1", "--out", run)
    assert code == 0, err
    good = write_clip(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    code, out, err = run_cli("predict", good, tmp_path / "bad.mp4", "--checkpoint", run, "--json", tmp_path / "p.json")
    assert code == 1 and err.strip().splitlines() == [
        f"tkvr: error: 1 of 2 files could not be read (e.g. {tmp_path / 'bad.mp4'})"], err
    preds = json.loads((tmp_path / "p.json").read_text())
    assert len(preds[0]["labels"]) == 5 and "error" in preds[1]  # the readable file still got its labels


# ---------------------------------------------------------------- 10. records across resumes
def test_resume_keeps_one_record_of_each_step_and_epoch(run_cli, tmp_path):
    import csv

    run = tmp_path / "run"
    args = ["train", "--data", "toy", *FAST, "--epochs", "3", "--limit-batches", "3", "--log-every", "1",
            "--out", run]
    code, _, err = run_cli(*args, "--max-steps", "3")  # epoch 1 ends at step 3, its checkpoint written
    assert code == 0, err
    with (run / "steps.csv").open("a") as f:  # what a process killed in epoch 2 had logged after it
        f.write("2,4,5.0,1e-06,10\n2,5,5.0,1e-06,10\n")
    code, _, err = run_cli(*args, "--resume", "auto")  # epoch 2 again, from step 3
    assert code == 0, err
    steps = [int(r["step"]) for r in csv.DictReader((run / "steps.csv").open())]
    assert steps == list(range(1, 10)), steps
    report = json.loads((run / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3] and report["final"]["num_samples"] == 216
    before = (run / "report.json").read_text()
    code, out, err = run_cli(*args, "--resume", "auto")  # a finished run
    assert code == 0 and "nothing to train" in out, err
    assert (run / "report.json").read_text() == before


# ---------------------------------------------------------------- 11-12. hardening, found by trying
def test_dataset_folders_say_what_they_leave_out(run_cli, tmp_path):
    for cls in ("jump", "run"):
        write_clip(tmp_path / "data" / cls / "a.mp4")
        (tmp_path / "data" / cls / "notes.txt").write_text("shot on a phone")
    code, out, err = run_cli("check", "--data", tmp_path / "data", "--workers", "0", "--json", tmp_path / "c.json")
    assert code == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["num_samples"] == 2  # the notes are not samples
    assert "2 files that are neither videos nor images left out" in out
    assert "the same samples serve as training and validation data" in out
    (tmp_path / "list").mkdir()
    list_dataset(tmp_path / "list", {"../data/jump/a.mp4": "jump", str(tmp_path / "data/run/a.mp4"): "run"})
    code, out, err = run_cli("check", "--data", tmp_path / "list", "--workers", "0")
    assert code == 0 and "2 of 2 listed files lie outside" in out, err


def test_out_of_memory_is_not_an_unreadable_video(run_cli, tmp_path, monkeypatch):
    from tkvr.data import video

    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--limit-batches", "1", "--out", run)
    assert code == 0, err

    def oom(self, indices):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(video.TorchcodecVideo, "_read", oom)
    monkeypatch.setattr(video.PyAVVideo, "_read", oom)
    code, _, err = run_cli("eval", "--checkpoint", run, "--views", "1000x1", "--workers", "0")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "out of memory" in lines[0] and "--views" in lines[0], err


def test_a_run_is_found_from_anywhere_and_its_config_reused(run_cli, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = small_set(tmp_path / "work", bad=())
    code, out, err = run_cli("train", "--data", "data", *FAST, "--limit-batches", "1", "--out", "run")
    assert code == 0, err
    assert "warning: --warmup 0 >= --epochs" not in out
    import yaml

    saved = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert saved["data"]["data"] == str(data)  # absolute, not as typed
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "work" / "run", "--workers", "0")
    assert code == 0, err
    # the run's own config.yaml as --config: same settings, a new folder
    code, out, err = run_cli("train", "--config", tmp_path / "work" / "run" / "config.yaml", "--out", "again",
                             "--warmup", "3")
    assert code == 0, err
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert again["model"] == saved["model"] and again["data"] == saved["data"]
    assert "warning: --warmup 3 >= --epochs 1" in out


def test_decoder_messages_are_short_and_counts_read_well():
    from tkvr.data.video import _short
    from tkvr.progress import count

    msg = _short(RuntimeError("/__w/torchcodec/src/torchcodec/_core/SingleStreamDecoder.cpp:123: Could not open "
                              "input file: clip.mp4"))
    assert msg == "RuntimeError: Could not open input file: clip.mp4"
    assert [count(1, "class"), count(2, "class"), count(1, "video"), count(3, "video")] == [
        "1 class", "2 classes", "1 video", "3 videos"]


# ---------------------------------------------------------------- multi-node as users launch it
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_nodes(*args):
    """`torchrun --nnodes 2 --nproc-per-node 1 --node-rank R` on localhost, both nodes at once."""
    import os
    import subprocess
    import sys

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(r), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "tkvr", *map(str, args), "--num-nodes", "2", "--devices", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def slurm_two_nodes(*args):
    """Two tasks with the variables `srun` sets for an allocation of 2 nodes x 1 task (no srun
    here: the variables are what Fabric reads)."""
    import os
    import subprocess
    import sys

    port = str(free_port())
    procs = []
    for r in (0, 1):
        env = dict(os.environ, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_PROCID=str(r), SLURM_LOCALID="0",
                   SLURM_NODEID=str(r), SLURM_NODELIST="127.0.0.1", SLURM_JOB_NAME="tkvr", SLURM_JOB_ID="4321",
                   MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, "-m", "tkvr", *map(str, args), "--num-nodes", "2",
                                       "--devices", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_nodes_match_one_node_with_two_devices(tmp_path):
    common = ["--accelerator", "cpu", "--strategy", "ddp"]
    train = ["train", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "0",
             "--epochs", "1", "--limit-batches", "2", "--warmup", "0", "--lr", "1e-4", *common]
    torchrun_two_nodes(*train, "--out", tmp_path / "nodes")
    code, _, err = tkvr_process(*train, "--devices", "2", "--out", tmp_path / "devices")
    assert code == 0, err[-3000:]
    slurm_two_nodes(*train, "--out", tmp_path / "slurm")
    b = torch.load(tmp_path / "devices" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for launch in ("nodes", "slurm"):
        a = torch.load(tmp_path / launch / "checkpoints" / "last.pt", weights_only=True)["model"]
        # the same steps on the same shards; only float summation order differs (threads per process)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a), launch
        losses = [(tmp_path / x / "metrics.csv").read_text().splitlines()[1].split(",")[2] for x in (launch, "devices")]
        assert losses[0] == losses[1], launch
    ev = ["eval", "--workers", "0", "--batch-size", "7", "--checkpoint", tmp_path / "nodes", *common]
    torchrun_two_nodes(*ev, "--json", tmp_path / "nodes.json")
    code, _, err = tkvr_process(*ev, "--devices", "2", "--json", tmp_path / "devices.json")
    assert code == 0, err[-3000:]
    n, d = (json.loads((tmp_path / f"{x}.json").read_text()) for x in ("nodes", "devices"))
    assert n["num_samples"] == d["num_samples"] == 216 and n["per_class"] == d["per_class"]


def test_disk_full_while_logging_is_one_line(run_cli, tmp_path, monkeypatch):
    import errno

    from tkvr import engine

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(engine.CsvLog, "write", full)
    code, _, err = run_cli("train", "--data", "toy", *FAST, "--limit-batches", "1", "--log-every", "1",
                           "--out", tmp_path / "run")
    lines = err.strip().splitlines()
    assert code == 1 and lines == [f"tkvr: error: cannot write {tmp_path / 'run' / 'steps.csv'}: "
                                   "No space left on device"], err
    assert (tmp_path / "run" / "config.yaml").is_file()  # what was written before stays


def test_replacement_warning_names_the_class_and_file_once(tmp_path, caplog):
    from tkvr.data.loader import BadFiles, ClipDataset, collate
    from tkvr.data.specs import Sample

    good = write_clip(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    samples = [Sample(str(tmp_path / "bad.mp4"), 0), Sample(str(good), 0)]
    ds = ClipDataset(samples, 4, lambda x: x, train=True, classes=["juggling"])
    budget = BadFiles(samples, 1.0)
    with caplog.at_level("WARNING", logger="tkvr"):
        for _ in range(3):  # the main process warns, once per file
            item = ds[0]
            assert item["index"] == 1 and item["bad"] == [0]
            batch = collate([item])
            budget.update(batch["bad"], batch["why"])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "replaced by another 'juggling' sample" in warnings[0]
    assert "bad.mp4" in warnings[0] and ".cpp" not in warnings[0]
