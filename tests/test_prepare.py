"""tkvr prepare: the real clips re-encoded with short GOPs, corrupt sources named and skipped, kill
and resume, and the precision default."""
import doctest
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import realdata, write_clip


def test_docstring_examples():
    import tkvr.run.auto
    import tkvr.run.prepare

    for module in (tkvr.run.auto, tkvr.run.prepare):
        assert doctest.testmod(module).failed == 0, module


def test_precision_auto_resolves_per_device():
    from tkvr.run.auto import resolve_precision

    assert resolve_precision("auto", "auto", cuda=True, bf16=True) == "bf16-mixed"
    assert resolve_precision("auto", "gpu", cuda=True, bf16=False) == "16-mixed"
    assert resolve_precision("auto", "auto", cuda=False, bf16=False) == "32-true"
    assert resolve_precision("auto", "cpu", cuda=True, bf16=True) == "32-true"  # asked for the CPU
    assert resolve_precision("16-mixed", "auto", cuda=True, bf16=True) == "16-mixed"  # as given


def frames_and_keys(path):
    import av

    with av.open(str(path)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
        return len(packets), [i for i, p in enumerate(packets) if p.is_keyframe]


def test_prepare_real_clips_then_train_and_eval(run_cli, tmp_path):
    videos = realdata("videos")
    names = ["k400_arm_wrestling_mmaction2_demo.mp4", "ucf101_ApplyEyeMakeup_mmaction2_test.avi",
             "k400_flipping_a_pancake.mkv", "ntu60_S001C001P001R001A001_rgb.avi"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.mp4").write_bytes(os.urandom(4000))
    rows = "".join(f"{videos / n} {i % 2}\n" for i, n in enumerate(names)) + f"{src / 'bad.mp4'} 1\n"
    (src / "train.txt").write_text(rows)
    (src / "val.txt").write_text(rows)
    (src / "labels.txt").write_text("arm wrestling\napplying eye makeup\n")
    out = tmp_path / "fast"
    code, stdout, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert "unreadable, left out" in stdout and "bad.mp4" in stdout
    assert (out / "unreadable.txt").read_text().split() == [str(src / "bad.mp4")]
    lines = (out / "train.txt").read_text().splitlines()
    assert len(lines) == 4
    from tkvr.data.video import VideoFile

    for line, name in zip(lines, names):
        new = out / line.split()[0]
        n, keys = frames_and_keys(new)
        assert keys == list(range(0, n, 8)), name  # a key frame every 8 frames, no B-frames to reorder
        assert len(VideoFile(new, "pyav")) == len(VideoFile(videos / name, "pyav")), name  # no frame lost
        v = VideoFile(new, "pyav")
        assert min(v.read([0]).shape[-2:]) <= 320
    code, _, err = run_cli("train", "--data", out, "--backbone", "tiny", "--frames", "2", "--batch-size", "2",
                           "--workers", "0", "--epochs", "1", "--warmup", "0", "--out", tmp_path / "run")
    assert code == 0, err
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "run", "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["num_samples"] == 4


def test_killed_prepare_resumes_without_half_written_files(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        write_clip(src / "clips" / f"c{i}.mp4", frames=96, size=192, seed=i)
    (src / "train.txt").write_text("".join(f"clips/c{i}.mp4 {i % 2}\n" for i in range(6)))
    (src / "labels.txt").write_text("a\nb\n")
    out = tmp_path / "fast"
    cmd = [sys.executable, "-m", "tkvr", "prepare", "--data", str(src), "--out", str(out), "--workers", "0"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    done = []
    deadline = time.time() + 120
    while not done and time.time() < deadline and p.poll() is None:
        done = [f for f in (out / "videos").glob("*.mp4")] if (out / "videos").is_dir() else []
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert done, "prepare finished no video before the kill"
    first = {f: f.stat().st_mtime_ns for f in done}
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    import re

    assert re.search(r"[1-9][0-9]* already done", r.stdout), r.stdout  # the killed run's files are kept
    assert not list((out / "videos").glob(".*")), "a half-written file was left"
    assert len(list((out / "videos").glob("*.mp4"))) == 6
    assert all(f.stat().st_mtime_ns == t for f, t in first.items())  # finished files never rewritten
    for f in (out / "videos").glob("*.mp4"):
        assert frames_and_keys(f)[0] == 96


# ---------------------------------------------------------------- augmentation on the device
@pytest.mark.parametrize("crop", ["rrc", "multiscale"])
def test_device_augmentation_gives_the_cpu_crops(crop):
    """The device path (run here with device=cpu) against the CPU pipeline, same seeds."""
    import torch

    from tkvr.data.transforms import ClipAugment, train_transform

    pre = {"size": 32, "mean": (0.48, 0.45, 0.40), "std": (0.26, 0.26, 0.27)}
    flips = set()
    for seed in range(12):
        x = torch.randint(0, 256, (4, 3, 60 + 5 * seed, 90), dtype=torch.uint8)
        torch.manual_seed(seed)
        cpu = train_transform(pre, crop, flip=True)(x)
        torch.manual_seed(seed)
        aug = ClipAugment(pre, crop, flip=True)
        params = aug.draw(*x.shape[-2:])
        flips.add(int(params[4]))
        assert torch.equal(aug.apply(x, params), cpu), seed
    assert flips == {0, 1}  # both branches were compared


def test_device_augmentation_trains_like_cpu(run_cli, tmp_path):
    import torch

    from tkvr.data.loader import collate

    args = ["--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "8", "--workers", "1", "--epochs",
            "2", "--limit-batches", "2", "--warmup", "0", "--lr", "1e-3"]
    for where in ("cpu", "device"):
        code, _, err = run_cli("train", *args, "--augment", where, "--out", tmp_path / where)
        assert code == 0, err
    a, b = (torch.load(tmp_path / w / "checkpoints" / "last.pt", weights_only=True)["model"] for w in ("cpu", "device"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same crops, the same steps, the same weights
    items = [{"video": torch.zeros(2, 3, h, 40, dtype=torch.uint8), "params": torch.zeros(5, dtype=torch.long),
              "label": 0, "index": i, "bad": [], "why": {}} for i, h in enumerate((30, 36))]
    assert isinstance(collate(items)["video"], list)  # stored sizes differ: a list, cropped on the device
    assert collate(items[:1] * 2)["video"].shape == (2, 2, 3, 30, 40)


def test_jpeg_frames_decode_in_one_batch_with_pillows_pixels(tmp_path):
    """Frame folders go through torchcodec's batched JPEG decoder (nvJPEG with
    --decode-device cuda): on the CPU the pixels equal Pillow's, frame for frame."""
    import torch
    from conftest import write_jpeg

    from tkvr.data.video import _decode_still, open_reader, torchcodec_error

    if torchcodec_error():
        pytest.skip(f"torchcodec cannot load here: {torchcodec_error()}")
    g = torch.Generator().manual_seed(0)
    for t in range(6):
        write_jpeg(torch.randint(0, 256, (3, 40, 56), generator=g, dtype=torch.uint8), tmp_path / f"img_{t + 1:05d}.jpg")
    reader = open_reader(str(tmp_path), "torchcodec", "cpu")
    idx = [0, 5, 5, 2]
    pillow = torch.stack([_decode_still(str(tmp_path / f"img_{i + 1:05d}.jpg")) for i in idx])
    assert len(reader) == 6 and torch.equal(reader.read(idx), pillow)


def test_prepare_names_a_cut_video_and_writes_nothing_for_it(tmp_path):
    from conftest import write_faststart_mp4

    from tkvr.run.prepare import encode

    raw = write_faststart_mp4(tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(raw[: len(raw) * 3 // 10])
    src, error, fault = encode((str(tmp_path / "cut.mp4"), str(tmp_path / "out.mp4"), 320, 8, 23))
    assert error and "cut.mp4" in error and not fault and not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*.part"))
    assert encode((str(tmp_path / "whole.mp4"), str(tmp_path / "ok.mp4"), 320, 8, 23))[1] is None


def test_a_video_listed_in_two_splits_is_encoded_once(run_cli, tmp_path):
    from conftest import small_set

    data = small_set(tmp_path, bad=())  # the same 3 clips listed as train and as val
    code, out, err = run_cli("prepare", "--data", data, "--out", tmp_path / "fast", "--workers", "0")
    assert code == 0, err
    assert "3 videos, 0 already done" in out
    assert len(list((tmp_path / "fast" / "videos").rglob("*.mp4"))) == 3
    train, val = ((tmp_path / "fast" / f"{s}.txt").read_text().splitlines() for s in ("train", "val"))
    assert len(train) == len(val) == 3 and sorted(ln.split()[0] for ln in train) == sorted(ln.split()[0] for ln in val)
