"""Nothing lost, every bound checked: tkvr prepare under faults and concurrent runs, a loss that
turns NaN, the unreadable-file budget, text files with a byte-order mark, and every file tkvr
reads refused in one line."""
import csv
import errno
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import alive, assert_user_error, assert_wrote, descendants, fast, write_clip

FAST = fast(data="toy", limit_batches=2, log_every=1)


# ---------------------------------------------------------------- a loss that becomes NaN
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(run_cli, tmp_path, monkeypatch):
    import torch.nn.functional as F

    run = tmp_path / "run"
    code, _, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "1", "--out", run)
    assert code == 0, err
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    calls = []

    real = F.cross_entropy

    def loss(logits, y, *a, **k):  # the resumed run's second step (step 4) diverges
        calls.append(1)
        value = real(logits, y, *a, **k)
        return value * float("nan") if len(calls) >= 2 else value

    monkeypatch.setattr(F, "cross_entropy", loss)
    code, _, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "3", "--resume", "auto", "--out", run)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "training loss became" in lines[0] and "at step 4" in lines[0] and "last good checkpoint" in lines[0]
    assert last.read_bytes() == before  # not overwritten by a model of NaNs
    steps = [int(r["step"]) for r in csv.DictReader((run / "steps.csv").open())]
    assert steps == [1, 2, 3], steps  # the step whose loss was not finite is not logged as a number


def test_precision_16_mixed_on_a_cpu_says_what_runs_and_records_it(run_cli, tmp_path):
    code, out, err = run_cli("train", *FAST, "--lr", "1e-4", "--epochs", "1", "--limit-batches", "1",
                             "--precision", "16-mixed", "--accelerator", "cpu", "--out", tmp_path / "r")
    assert code == 0, err
    assert "running bf16-mixed instead" in out and "lightning" not in (out + err).lower(), out + err
    import yaml

    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["device"]["precision"] == "bf16-mixed"


# ---------------------------------------------------------------- tkvr prepare: nothing lost
def clips_dataset(folder, n=6, frames=24, size=64):
    """A class-folder dataset of n small real clips."""
    for i in range(n):
        write_clip(folder / "ab"[i % 2] / f"c{i}.mp4", frames=frames, size=size, seed=i)
    return folder


def listed(out):
    return sorted(ln.rsplit(" ", 1)[0] for ln in (out / "train.txt").read_text().splitlines())


def test_prepare_stops_at_a_full_disk_and_a_rerun_finishes(run_cli, tmp_path, monkeypatch):
    """A write fault (here ENOSPC from the third output file, patched in) is not an unreadable
    source: one line, exit 1, the finished videos kept, nothing listed as unreadable."""
    import av

    src, out = clips_dataset(tmp_path / "src"), tmp_path / "fast"
    real, opened = av.open, []

    def full_disk(path, mode="r", *a, **k):
        if mode == "w":
            opened.append(path)
            if len(opened) == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, mode, *a, **k)

    monkeypatch.setattr(av, "open", full_disk)
    code, _, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "No space left on device" in lines[0], err
    assert "the 2 videos finished" in lines[0] and "rerun" in lines[0]
    assert len(list((out / "videos").glob("*.mp4"))) == 2 and not list((out / "videos").glob(".*.part"))
    assert not (out / "unreadable.txt").exists() and not (out / "train.txt").exists()
    monkeypatch.setattr(av, "open", real)  # space freed
    code, stdout, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert "2 already done" in stdout and "6 videos ready, 0 unreadable" in stdout
    assert_wrote(stdout, out)
    assert len(listed(out)) == 6 and not (out / "unreadable.txt").exists()


def test_prepare_on_a_real_full_tmpfs(tmp_path):
    """The same on a real 192 KiB tmpfs, where the machine lets the tests mount one (root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here; the patched-write test covers the same path")
    try:
        src, out = clips_dataset(tmp_path / "src", n=8, frames=96, size=192), mnt / "fast"
        (mnt / "fill").write_bytes(b"\0" * 120_000)
        cmd = [sys.executable, "-m", "tkvr", "prepare", "--data", str(src), "--out", str(out), "--workers", "2",
               "--crf", "0"]
        first = subprocess.run(cmd, capture_output=True, text=True)
        lines = first.stderr.strip().splitlines()
        assert first.returncode == 1 and len(lines) == 1 and "No space left on device" in lines[0], first.stderr
        assert "finished" in lines[0] and "are kept" in lines[0], lines[0]  # a video's write, not a list's
        kept = list((out / "videos").glob("*.mp4"))
        assert not list((out / "videos").glob(".*.part")) and not (out / "unreadable.txt").exists()
        (mnt / "fill").unlink()
        second = subprocess.run(cmd, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert f"{len(kept)} already done" in second.stdout and "8 videos ready, 0 unreadable" in second.stdout
        assert len(listed(out)) == 8 and not (out / "unreadable.txt").exists()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_two_prepare_runs_on_one_out(run_cli, tmp_path):
    """The second refuses in one line naming the first's pid; the first completes with every video."""
    src, out = clips_dataset(tmp_path / "src", n=8, frames=120, size=256), tmp_path / "fast"
    cmd = [sys.executable, "-m", "tkvr", "prepare", "--data", str(src), "--out", str(out), "--workers", "0",
           "--crf", "0"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".tkvr.lock"
    import time

    deadline = time.time() + 60
    while time.time() < deadline and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.02)
    code, _, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    running = first.poll() is None
    stdout, stderr = first.communicate(timeout=300)
    assert running, "the first run ended before the second started; give it more work"
    assert_user_error(code, err, "--out", "another tkvr prepare", f"pid {first.pid}")
    assert first.returncode == 0, stderr
    assert "8 videos ready, 0 unreadable" in stdout and len(listed(out)) == 8
    assert len(list((out / "videos").glob("*.mp4"))) == 8


def test_unreadable_txt_says_this_runs_result(run_cli, tmp_path):
    src, out = clips_dataset(tmp_path / "src", n=4), tmp_path / "fast"
    bad = src / "a" / "late.mp4"
    bad.write_bytes(os.urandom(3000))  # still being copied, say
    code, _, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert (out / "unreadable.txt").read_text().split() == [str(bad)]
    write_clip(bad, frames=24, size=64)  # the copy finished
    code, stdout, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert "5 videos ready, 0 unreadable" in stdout
    assert not (out / "unreadable.txt").exists() and len(listed(out)) == 5


def test_prepare_holds_a_line_break_in_a_name_and_its_output_checks(run_cli, tmp_path):
    src, out = clips_dataset(tmp_path / "src", n=2), tmp_path / "fast"
    write_clip(src / "a" / "two\nlines.mp4", frames=24, size=64)
    code, _, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert len((out / "train.txt").read_text().splitlines()) == 3
    code, _, err = run_cli("check", "--data", out, "--workers", "0", "--json", tmp_path / "c.json")
    assert code == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["num_samples"] == 3


def test_prepare_names_an_audio_only_source(tmp_path):
    from conftest import write_audio_only

    from tkvr.run.prepare import encode

    path = write_audio_only(tmp_path / "speech.mp4")
    src, error, fault = encode((str(path), str(tmp_path / "o.mp4"), 320, 8, 23))
    assert error == f"{path}: no video stream (audio only?)" and not fault


# ---------------------------------------------------------------- the unreadable-file budget
def test_every_unreadable_replacement_is_counted(tmp_path):
    """A replacement that is unreadable too is counted as well: the item reports every sample
    that failed before one read."""
    from tkvr.data.loader import BadFiles, ClipDataset, Training
    from tkvr.data.specs import Sample
    from tkvr.data.transforms import train_transform
    from tkvr.data.video import Reading

    paths = []
    for i in range(3):
        (tmp_path / f"bad{i}.mp4").write_bytes(os.urandom(500))
        paths.append(tmp_path / f"bad{i}.mp4")
    paths.append(write_clip(tmp_path / "good.mp4"))
    samples = [Sample(str(p), 0) for p in paths]
    pre = {"size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3, "interpolation": "bicubic"}
    longest = 0
    for seed in range(8):
        torch.manual_seed(seed)
        ds = ClipDataset(samples, 2, train_transform(pre), Reading("pyav"), Training())
        item = ds[0]
        assert item["index"] == 3 and item["bad"][0] == 0 and sorted(item["bad"]) == sorted(set(item["bad"]))
        assert set(item["why"]) == set(item["bad"]) and all("replaced by another" in w for w in item["why"].values())
        budget = BadFiles(samples, 1.0)
        from tkvr.data.loader import collate

        budget.update(collate([item])["bad"])
        assert len(budget.bad) == len(item["bad"])
        longest = max(longest, len(item["bad"]))
    assert longest >= 2  # some draw met an unreadable replacement (2 of 3 choices are)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_budget_counts_lists_and_warns_once_per_file(run_cli, tmp_path, caplog, workers):
    data = tmp_path / "data"
    for c in "ab":
        for i in range(5):
            if i < 2:
                (data / c).mkdir(parents=True, exist_ok=True)
                (data / c / f"bad{i}.mp4").write_bytes(os.urandom(2000))
            else:
                write_clip(data / c / f"c{i}.mp4", seed=i)
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", data, "--backbone", "tiny", "--frames", "2", "--batch-size", "2",
                           "--workers", workers, "--epochs", "1", "--warmup", "0", "--max-bad-fraction", "0.35",
                           "--out", run)
    lines = err.strip().splitlines()
    assert code == 1 and "4 of 10 training videos are unreadable" in lines[-1], err
    bad = sorted(str(data / c / f"bad{i}.mp4") for c in "ab" for i in range(2))
    assert sorted((run / "unreadable.txt").read_text().split()) == bad
    warned = [r.getMessage() for r in caplog.records if "replaced by another" in r.getMessage()]
    assert sorted(w.split(": ")[1] for w in warned) == bad, warned  # each once, whatever the worker count


# ---------------------------------------------------------------- text files: a BOM, twin names
def test_a_byte_order_mark_is_not_part_of_a_name(tmp_path):
    from tkvr.data.specs import resolve

    for c in ("wave", "clap"):
        write_clip(tmp_path / "clips" / f"{c}.mp4")
    (tmp_path / "labels.txt").write_text("\ufeffwave\nclap\n", encoding="utf-8")
    (tmp_path / "train.txt").write_text("\ufeffclips/wave.mp4 wave\nclips/clap.mp4 1\n", encoding="utf-8")
    (tmp_path / "dataset.yaml").write_text("\ufeffformat: list\nlabels: labels.txt\ntrain: train.txt\n",
                                           encoding="utf-8")
    for spec in (tmp_path, tmp_path / "dataset.yaml"):
        src = resolve(str(spec))
        assert src.classes == ["wave", "clap"]
        assert [s.path for s in src.split("train")] == [str(tmp_path / "clips" / "wave.mp4"),
                                                       str(tmp_path / "clips" / "clap.mp4")]


# ---------------------------------------------------------------- every file tkvr reads: one line
def _run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"final": {"top1": 50.0}}))
    (run / "config.yaml").write_text("model:\n  head: text\ndata:\n  label_fraction: 0.5\n")
    (run / "steps.csv").write_text("epoch,step,loss,lr\n1,1,2.5,1e-5\n1,2,2.1,1e-5\n")
    return run


BROKEN = [  # (file, content, figure): each must give one line naming the file, exit 2
    ("steps.csv", "epoch,step,loss,lr\n1,1,abc,1e-5\n1,2,2.0,1e-5\n", "loss"),
    ("steps.csv", "", "loss"),
    ("steps.csv", "epoch,step,loss\n1,1\n1,2,2.0\n", "loss"),
    ("report.json", "[1, 2]", "fractions"),
    ("report.json", '{"final": {"top1": 5', "fractions"),
    ("report.json", '{"final": {"top1": "high"}}', "fractions"),
    ("config.yaml", "model: [text\n", "loss"),
    ("config.yaml", "!!python/object/apply:os.system ['echo owned']\n", "loss"),
    ("config.yaml", "- a\n- b\n", "fractions"),
    ("config.yaml", "data: {label_fraction: lots}\n", "fractions"),
]


@pytest.mark.parametrize("name, content, figure", BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_plot_refuses_a_malformed_run_file_in_one_line(run_cli, tmp_path, name, content, figure):
    run = _run_folder(tmp_path)
    (run / name).write_text(content)
    code, _, err = run_cli("plot", figure, run, "--out", tmp_path / "f.png")
    assert_user_error(code, err)
    assert name in err or str(run) in err, err
    assert not (tmp_path / "f.png").exists()


def test_plot_correlation_refuses_an_empty_head(run_cli, tmp_path):
    torch.save({"embeddings": torch.zeros(0, 8), "classes": []}, tmp_path / "e.pt")
    code, _, err = run_cli("plot", "correlation", tmp_path / "e.pt", "--out", tmp_path / "c.png")
    assert_user_error(code, err, "e.pt", "(0, 8)")


def test_the_readers_turn_any_damage_into_one_error(tmp_path):
    """Truncations, wrong types, empty files and random bytes: a value of the right kind or a
    TkvrError, never another exception."""
    import random

    from tkvr.base.errors import TkvrError
    from tkvr.base.fileio import read_json, read_text, read_yaml
    from tkvr.base.table import read_table

    good = {
        "yaml": ("model:\n  head: text\n  templates: ['a video of {}.']\ndata: {label_fraction: 0.5}\n",
                 lambda p: read_yaml(p, "run config")),
        "json": (json.dumps({"final": {"top1": 1.5, "per_class": {"a": 1}}, "history": [1, 2]}),
                 lambda p: read_json(p, "run report")),
        "csv": ("epoch,step,loss,lr\n1,1,2.5,1e-5\n1,2,2.1,1e-5\n2,3,1.9,1e-5\n",
                lambda p: read_table(p, "steps log", {"step": int, "loss": float})),
        "txt": ("wave\nclap\n", lambda p: read_text(p, "labels file")),
    }
    rng = random.Random(0)
    path = tmp_path / "f"
    for kind, (text, read) in good.items():
        damaged = [text[:k] for k in range(0, len(text), 3)]
        damaged += ["", "[1, 2]", "- a\n- b\n", "42", "null", '"text"', "\ufeff" + text, "a,b\n1,2,3,4\n"]
        damaged += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(30)]
        for d in damaged:
            path.write_bytes(d if isinstance(d, bytes) else d.encode())
            try:
                value = read(path)
            except TkvrError as e:
                assert "\n" not in str(e) and str(path) in str(e), (kind, d, str(e))
                continue
            assert isinstance(value, {"yaml": dict, "json": dict, "csv": list, "txt": str}[kind]), (kind, d)
    with pytest.raises(TkvrError, match="does not exist"):
        read_text(tmp_path / "absent", "labels file")


# ---------------------------------------------------------------- waits and small messages
def test_timm_weights_offline_fail_at_once(run_cli, tmp_path, monkeypatch):
    """No network, HF_HUB_OFFLINE unset, weights not cached: one line at once, the hub never tried."""
    import socket

    import timm

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache

    def no_network(*a, **k):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    tried = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: tried.append(k.get("pretrained")) or real(*a, **k))
    code, _, err = run_cli("train", "--data", "toy", "--backbone", "tiny", "--visual", "timm:test_resnet",
                           "--out", tmp_path / "run")
    assert_user_error(code, err, "--visual timm:test_resnet", "not cached and there is no network",
                      "--no-visual-pretrained")
    assert True not in tried  # refused before timm went to the hub


def test_prepare_goes_on_where_the_filesystem_has_no_locks(run_cli, tmp_path, monkeypatch):
    import fcntl

    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    src, out = clips_dataset(tmp_path / "src", n=2), tmp_path / "fast"
    code, stdout, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert "cannot lock" in err and "2 videos ready" in stdout


def test_a_killed_prepare_takes_its_workers_with_it_and_a_rerun_lists_every_video(run_cli, tmp_path):
    import signal
    import time

    src, out = clips_dataset(tmp_path / "src", n=4, frames=240, size=320), tmp_path / "fast"
    cmd = [sys.executable, "-m", "tkvr", "prepare", "--data", str(src), "--out", str(out), "--workers", "2",
           "--crf", "0", "--gop", "1"]  # slow to encode: the workers are mid-video at the kill
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and not list((out / "videos").glob(".*.part")):
        time.sleep(0.05)  # a worker is encoding
    workers = [c for c in descendants(first.pid) if alive(c)]
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = set((out / "videos").glob("*.mp4"))
    assert workers, "no worker was seen encoding"
    # An encoding worker dies with its parent (the kernel's signal): the video in hand is never
    # finished (renamed in) after the kill; one still starting ends once it finds its parent gone.
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "a worker outlived its killed parent by 10 s"
    late = sorted(f.name for f in set((out / "videos").glob("*.mp4")) - done)
    assert not late, f"finished after the kill, its lock gone: {late}"
    code, stdout, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 0, err
    assert "4 videos ready, 0 unreadable" in stdout and len(listed(out)) == 4


def test_a_part_file_that_vanishes_is_a_fault_not_an_unreadable_video(run_cli, tmp_path, monkeypatch):
    import tkvr.run.prepare as prepare

    src, out = clips_dataset(tmp_path / "src", n=2), tmp_path / "fast"
    real = os.replace

    def raced(a, b):
        if str(a).endswith(".part"):
            os.unlink(a)  # as a killed run's worker, or a rerun's clean-up, would
        return real(a, b)

    monkeypatch.setattr(prepare.os, "replace", raced)
    code, _, err = run_cli("prepare", "--data", src, "--out", out, "--workers", "0")
    assert code == 1 and "vanished" in err and len(err.strip().splitlines()) == 1, err
    assert not (out / "unreadable.txt").exists() and not (out / "train.txt").exists()
