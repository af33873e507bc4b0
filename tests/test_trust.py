"""Nothing tkvr reads back is trusted blindly, nothing it writes in parts can mismatch, no run
outlives its kill: checkpoints checked against their checksum and structure, a run's own files
read as user input, locks on every output, interrupts in one line."""
import csv
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
import torch
from conftest import alive, assert_user_error, descendants, fast


@pytest.mark.parametrize("raised", [KeyboardInterrupt, click.Abort])
def test_an_interrupt_is_one_line_and_exit_130(run_cli, monkeypatch, raised):
    import tkvr.run.check

    def interrupted(source, **kw):
        raise raised()

    monkeypatch.setattr(tkvr.run.check, "check", interrupted)
    code, _, err = run_cli("check", "--data", "toy")
    assert code == 130, err
    assert err.strip().splitlines() == ["tkvr: interrupted; everything written before it is kept"]


FAST = fast(data="toy", limit_batches=1, epochs=1)


@pytest.fixture
def trained(tiny_run):
    """The session's tiny run, read (never changed) by the tests below: they tamper with copies."""
    return tiny_run


def copy_run(trained, tmp_path):
    import shutil

    return Path(shutil.copytree(trained, tmp_path / "run"))


def flip_tensor_bytes(path, n=100):
    """XOR n bytes inside the largest tensor of a torch.save file (zip members are stored, not
    compressed): torch.load still reads it; only the weights changed."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 3
    for i in range(start, start + n):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def commands_reading(run, tmp_path):
    """Every command that loads a checkpoint, pointed at `run`."""
    return {
        "eval": ["eval", "--checkpoint", run, "--workers", "0"],
        "predict": ["predict", "--checkpoint", run, "--out", tmp_path / "p.csv", tmp_path / "none.mp4"],
        "export": ["export", "--checkpoint", run, "--out", tmp_path / "m.pt2"],
        "resume": ["train", "--out", run, "--resume", "auto"],
        "plot": ["plot", "correlation", run, "--out", tmp_path / "c.png"],
    }


def test_a_byte_flipped_checkpoint_is_refused_by_every_reader(run_cli, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    for name in ("last.pt", "best.pt"):
        flip_tensor_bytes(run / "checkpoints" / name)
    torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # torch itself notices nothing
    (tmp_path / "none.mp4").write_bytes(b"")
    for command, args in commands_reading(run, tmp_path).items():
        code, _, err = run_cli(*args)
        lines = err.strip().splitlines()
        assert code == 1, (command, err)
        assert len(lines) == 1 and "Traceback" not in err, (command, err)
        assert "checksum" in lines[0] and "checkpoints/" in lines[0], (command, err)
    assert not (tmp_path / "m.pt2").exists() and not (tmp_path / "c.png").exists()


def tamper(path, change):
    """Change a checkpoint's contents as a file of tkvr before checksums (or a resealed edit) can be."""
    ck = torch.load(path, weights_only=True)
    ck.pop("checksum")
    change(ck)
    torch.save(ck, path)


TAMPERS = {
    "frames": (lambda ck: ck["config"]["model"].update(frames="lots"), "frames 'lots' is not an int"),
    "no model": (lambda ck: ck.pop("model"), "no 'model' weights"),
    "no classes": (lambda ck: ck.pop("classes"), "'classes'"),
    "config list": (lambda ck: ck.update(config=["model"]), "'config'"),
    "lr nan": (lambda ck: ck["config"]["optim"].update(lr=float("nan")), "lr nan is not a finite number"),
    "model entry": (lambda ck: ck["model"].update({"head.weight": "abc"}), "'head.weight' is not a tensor"),
}


@pytest.mark.parametrize("name", TAMPERS)
def test_a_tampered_checkpoint_is_one_line_naming_file_and_key(trained, tmp_path, name):
    from tkvr.base.errors import TkvrError
    from tkvr.run.checkpoint import read_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes((trained / "checkpoints" / "last.pt").read_bytes())
    change, words = TAMPERS[name]
    tamper(path, change)
    with pytest.raises(TkvrError) as e:
        read_checkpoint(str(path))
    assert words in str(e.value) and str(path) in str(e.value), str(e.value)


def test_every_reader_checks_the_structure(run_cli, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    for name in ("last.pt", "best.pt"):
        tamper(run / "checkpoints" / name, lambda ck: ck["config"]["model"].update(frames="x"))
    (tmp_path / "none.mp4").write_bytes(b"")
    for command, args in commands_reading(run, tmp_path).items():
        code, _, err = run_cli(*args)
        assert_user_error(code, err, "frames 'x' is not an int")


# ---------------------------------------------------------------- a run's own files, read as user input
def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


RUN_FILES = {
    "metrics garbage": (lambda r: edit(r / "metrics.csv", "\n1,2,", "\n1,abc,"), "metrics.csv", ":2: step 'abc'"),
    "steps bytes": (lambda r: (r / "steps.csv").write_bytes(bytes(range(256))), "steps.csv", "not UTF-8"),
    "frames lots": (lambda r: edit(r / "config.yaml", "frames: 2", "frames: lots"), "config.yaml",
                    "frames 'lots' is not an int"),
    "lr nan": (lambda r: edit(r / "config.yaml", "lr: 5.0e-06", "lr: .nan"), "config.yaml",
               "lr nan is not a finite number"),
    "cut config": (lambda r: (r / "config.yaml").write_text((r / "config.yaml").read_text().split("views: 1x1")[0]
                                                             + "views: 1x"), "config.yaml", "no optim, run group"),
    "views edited": (lambda r: edit(r / "config.yaml", "views: 1x1", "views: 1x"), "config.yaml", "--views '1x'"),
    # typed right but refused by the checks: the refusal names the file (TkvrError.about), not only the flag
    "fold edited": (lambda r: edit(r / "config.yaml", "  fold: 1\n", "  fold: 7\n"), "a value of the run's config.yaml",
                    "--fold must be 1, 2 or 3, got 7"),
}


@pytest.mark.parametrize("name", RUN_FILES)
def test_resume_reads_its_own_files_as_user_input(run_cli, trained, tmp_path, name):
    run = copy_run(trained, tmp_path)
    change, file, words = RUN_FILES[name]
    change(run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_cli("train", "--out", run, "--resume", "auto", "--epochs", "2")
    assert_user_error(code, err, file, words)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_a_log_row_cut_by_a_kill_is_not_kept(tmp_path):
    from tkvr.run.logs import EPOCH_COLUMNS, history

    path = tmp_path / "metrics.csv"
    path.write_text(",".join(EPOCH_COLUMNS) + "\n1,4,4.1,2.3,8.8,2.3,5e-06,41.2,0.38\n2,8,3.9,5.5,1")  # cut mid-field
    assert [r["epoch"] for r in history(path)] == [1]


# ---------------------------------------------------------------- predict --out read back
def test_predict_resume_drops_rows_that_do_not_parse(tmp_path, capsys):
    from tkvr.base.rows import Rows

    out = tmp_path / "p.csv"
    head = "file,label_1,score_1,error\n"
    good = 'a.mp4,x,0.9,\n"g\nh.mp4",x,0.8,\n'  # a line break is legal in a Linux name
    bad = "b.mp4,x,abc,\n" + "c.mp4,x\n" + "d.mp4,x,1.5,\n" + '"e\nf.mp4,x,0.5,\n'  # the last: cut in its quotes
    out.write_text(head + good + bad)
    rows = Rows(str(out), 1, windows=False, resume=True)
    assert sorted(rows.old) == ["a.mp4", "g\nh.mp4"]
    assert out.read_text() == head + good  # rewritten without them: their inputs are scored again
    assert "4 rows of" in capsys.readouterr().out

    out = tmp_path / "p.jsonl"
    out.write_text('{"file": "a.mp4", "labels": ["x"], "scores": [0.9]}\n["a list"]\n'
                   '{"file": "b.mp4", "labels": ["x"], "scores": ["abc"]}\n{"file": 3}\n')
    rows = Rows(str(out), 1, windows=False, resume=True)
    assert sorted(rows.old) == ["a.mp4"] and len(out.read_text().splitlines()) == 1


def test_the_out_file_comes_with_its_first_row(tmp_path):
    from tkvr.base.rows import Rows

    rows = Rows(str(tmp_path / "p.csv"), 1, windows=False, resume=False)
    rows.close()  # a run that failed before scoring (weights missing offline)
    assert not (tmp_path / "p.csv").exists()
    rows = Rows(str(tmp_path / "p.csv"), 1, windows=False, resume=False)
    rows.write([{"file": "a.mp4", "labels": ["x"], "scores": [0.5]}])
    rows.close()
    assert (tmp_path / "p.csv").read_text() == "file,label_1,score_1,error\na.mp4,x,0.5,\n"


# ---------------------------------------------------------------- names that are not UTF-8
def test_a_file_name_that_is_not_utf8_is_carried_through(run_cli, tmp_path):
    from conftest import write_clip

    from tkvr.data.video import open_reader
    from tkvr.run.prepare import target

    folder = tmp_path / "clips"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9.mp4")  # Latin-1: not UTF-8
    write_clip(folder / "plain.mp4", frames=8)
    os.link(folder / "plain.mp4", odd)
    r = open_reader(odd, "torchcodec")
    assert len(r) == 8
    r.close()
    assert target(tmp_path, odd).name.endswith(".mp4")
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", folder, "--backbone", "tiny", "--labels", "a,b", "--workers", "0",
                           "--decoder", "torchcodec", "--out", out)
    assert code == 0, err
    data = out.read_bytes()
    assert b"caf\xe9.mp4,a," in data or b"caf\xe9.mp4,b," in data  # scored, the name's own bytes
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"clips/caf\xe9.mp4\nclips/plain.mp4\n")
    code, _, err = run_cli("predict", lst, "--backbone", "tiny", "--labels", "a,b", "--workers", "0",
                           "--out", tmp_path / "q.jsonl")
    assert code == 0, err
    got = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [os.fsencode(g["file"]).endswith(b"caf\xe9.mp4") for g in got] == [True, False]
    assert all("labels" in g for g in got)


# ---------------------------------------------------------------- one writer per output
def test_a_held_output_refuses_a_second_writer(run_cli, trained, tmp_path):
    from tkvr.base.fileio import hold

    run = tmp_path / "run"
    with hold(run, "--out", "train", folder=True):
        code, _, err = run_cli("train", *FAST, "--out", run)
        assert_user_error(code, err, f"--out {run}", "another tkvr train", f"pid {os.getpid()}")
    assert not (run / "config.yaml").exists()
    out = tmp_path / "p.csv"
    with hold(out, "--out", "predict"):
        code, _, err = run_cli("predict", tmp_path / "none.mp4", "--checkpoint", trained, "--out", out)
        assert_user_error(code, err, "another tkvr predict", f"pid {os.getpid()}")
    with hold(tmp_path / "m.pt2", "--out", "export"):
        code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "m.pt2")
        assert_user_error(code, err, "another tkvr export")
    assert not out.exists() and not (tmp_path / "m.pt2").exists()


# ---------------------------------------------------------------- text files in the wild
def test_labels_csv_is_parsed_as_csv(tmp_path):
    from tkvr.data.classes import read_labels_file

    p = tmp_path / "labels.csv"
    p.write_text('id,name\n0,"push, pull"\n1,wave\n')
    assert read_labels_file(p) == ["push, pull", "wave"]
    p.write_text('"push, pull"\nwave\nsit, stand\n')
    assert read_labels_file(p) == ["push, pull", "wave", "sit, stand"]


def test_nul_bytes_and_other_encodings_are_one_line(run_cli, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "labels.txt").write_text("a\nb\n")
    (data / "train.txt").write_bytes(b"x.mp4 0\ny\x00.mp4 1\n")
    (data / "val.txt").write_text("x.mp4 0\n")
    code, _, err = run_cli("check", "--data", data)
    assert_user_error(code, err, "train.txt:2", "NUL")
    (tmp_path / "labels.txt").write_bytes(b"caf\xe9\nb\n")
    (tmp_path / "none.mp4").write_bytes(b"")
    code, _, err = run_cli("predict", tmp_path / "none.mp4", "--backbone", "tiny", "--labels", tmp_path / "labels.txt")
    assert_user_error(code, err, "labels.txt", "not UTF-8")
    (tmp_path / "c.yaml").write_bytes(b"lr: 1e-4\nname: caf\xe9\n")
    code, _, err = run_cli("train", "--config", tmp_path / "c.yaml", "--data", "toy")
    assert_user_error(code, err, "--config", "not UTF-8")


# ---------------------------------------------------------------- inputs tkvr may not read
UNPRIVILEGED = """
import json, sys
from tkvr.cli import main
out = {}
for name, args in json.loads(sys.argv[1]).items():
    try:
        main(args)
        out[name] = 0
    except SystemExit as e:
        out[name] = e.code
print("CODES " + json.dumps(out))
"""


def unprivileged(runs: dict, env=None):
    """Run tkvr commands in one process that file permissions apply to: as root (who reads
    everything), through setpriv without the capabilities that bypass them."""
    cmd = [sys.executable, "-c", UNPRIVILEGED, json.dumps({k: [str(a) for a in v] for k, v in runs.items()})]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file permissions cannot be applied to a child")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
               "-dac_override,-dac_read_search", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    codes = next((json.loads(x[6:]) for x in r.stdout.splitlines() if x.startswith("CODES ")), None)
    assert codes is not None, r.stderr[-3000:]
    return codes, r.stdout, r.stderr


def test_6_an_input_without_read_permission_is_an_unreadable_sample_a_class_folder_refused(tmp_path):
    from conftest import write_clip

    data = tmp_path / "data"
    for c in ("x", "y"):
        for i in range(3):
            write_clip(data / c / f"{c}{i}.mp4", frames=8, seed=i)
    # a second dataset with a class folder that cannot be listed (item 6 of the probes)
    other, closed = tmp_path / "other", tmp_path / "other" / "z"
    write_clip(other / "x" / "x9.mp4", frames=8)
    write_clip(closed / "z0.mp4", frames=8)
    locked = data / "y" / "y0.mp4"
    (data / "labels.txt").unlink(missing_ok=True)
    os.chmod(locked, 0)
    os.chmod(closed, 0)
    train = ["train", "--backbone", "tiny", "--frames", "2", "--batch-size", "2", "--workers", "1", "--epochs",
             "1", "--warmup", "0", "--max-bad-fraction", "0.5"]
    try:
        runs = {
            f"predict{w}": ["predict", data, other, "--backbone", "tiny", "--labels", "x,y", "--workers", w,
                            "--out", tmp_path / f"p{w}.csv"]
            for w in (0, 1)
        }
        runs["check"] = ["check", "--data", data, "--workers", "0", "--json", tmp_path / "check.json"]
        runs["train"] = [*train, "--data", data, "--out", tmp_path / "run"]
        runs["check_closed"] = ["check", "--data", other, "--workers", "0"]
        runs["train_closed"] = [*train, "--data", other, "--out", tmp_path / "run2"]
        codes, out, err = unprivileged(runs)
    finally:
        os.chmod(locked, 0o644)
        os.chmod(closed, 0o755)
    assert "Traceback" not in err, err[-3000:]
    for w in (0, 1):
        assert codes[f"predict{w}"] == 1, err[-2000:]  # predict's status: some input did not read
        rows = {Path(r["file"]).name: r for r in csv.DictReader(open(tmp_path / f"p{w}.csv"))}
        assert len(rows) == 7 and rows["y0.mp4"]["error"].endswith("permission denied"), rows
        assert all(r["label_1"] for n, r in rows.items() if n != "y0.mp4")
    assert "cannot list 1 folder" in out and "z: permission denied" in out  # predict's inputs: said, left out
    report = json.loads((tmp_path / "check.json").read_text())
    assert [Path(p).name for p in report["unreadable"]] == ["y0.mp4"], report
    assert report["notes"][str(locked)].endswith("permission denied")
    assert codes["train"] == 0, err[-2000:]
    assert (tmp_path / "run" / "unreadable.txt").read_text().split()[0] == str(locked)
    # a dataset's class folder that cannot be listed: refused by name, nothing trained on the rest
    said = f"{closed}: cannot list this class folder (permission denied)"
    assert codes["check_closed"] == 2 and codes["train_closed"] == 2, codes
    assert err.count(said) == 2, err[-2000:]
    assert not (tmp_path / "run2" / "checkpoints").exists()


# ---------------------------------------------------------------- bounds up front, not out of memory
@pytest.mark.parametrize("cls, flags, words", [
    ("TrainConfig", {"data": "toy", "frames": 100000}, "--frames 100000: at most 512"),
    ("PredictConfig", {"files": ["a.mp4"], "backbone": "tiny", "labels": "a,b", "frames": 100000}, "at most 512"),
    ("PredictConfig", {"files": ["a.mp4"], "backbone": "tiny", "labels": "a,b", "window": 2.0, "stride": 1e-7},
     "--stride 1e-07: at least 0.02 s"),
    ("PredictConfig", {"files": ["a.mp4"], "backbone": "tiny", "labels": "a,b", "window": 1.0, "stride": 0.001},
     "--stride 0.001: at least 0.01 s"),
    ("TrainConfig", {"data": "toy", "views": "100000x3"}, "--views 100000x3: the number of temporal clips C"),
])
def test_sizes_that_would_exhaust_memory_are_refused_up_front(cls, flags, words):
    from tkvr.base.errors import TkvrError
    from tkvr.base.settings import build
    from tkvr.commands.predict import PredictConfig
    from tkvr.run.settings import TrainConfig

    with pytest.raises(TkvrError) as e:
        build({"TrainConfig": TrainConfig, "PredictConfig": PredictConfig}[cls], flags).validate()
    assert words in str(e.value), str(e.value)


def test_a_full_disk_is_refused_before_the_export_writes(run_cli, trained, tmp_path, monkeypatch):
    import tkvr.run.export as export

    monkeypatch.setattr(export.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "m.pt2")
    assert code == 1 and "free space or write elsewhere" in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_two_exports_never_share_a_sidecar_and_the_runner_checks_it(run_cli, trained, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import run_exported
    finally:
        sys.path.pop(0)
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "m.pt2")
    assert code == 0, err
    card = run_exported.sidecar(str(tmp_path / "m.pt2"))
    assert card["model_file"] == "m.pt2" and len(card["classes"]) == 54
    (tmp_path / "m.pt2.json").rename(tmp_path / "kept.json")
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "m.pt2", "--labels", "a,b")
    assert code == 0, err
    (tmp_path / "kept.json").replace(tmp_path / "m.pt2.json")  # an old sidecar beside a new model
    with pytest.raises(SystemExit) as e:
        run_exported.sidecar(str(tmp_path / "m.pt2"))
    assert "describes another model" in str(e.value)
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "n.pt2")
    assert code == 0 and (tmp_path / "n.pt2.json").is_file() and not (tmp_path / "n.json").exists()
    (tmp_path / "d.pt2.json").mkdir()
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "d.pt2")
    assert_user_error(code, err, "sidecar", "is a folder")
    assert not (tmp_path / "d.pt2").exists()


def test_the_runner_reads_an_avi_whose_metadata_is_not_utf8(tmp_path):
    from conftest import write_divx_avi

    from tkvr.data.video import open_reader

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import run_exported
    finally:
        sys.path.pop(0)
    from conftest import PRE

    from tkvr.data.sampling import segment_indices
    from tkvr.data.transforms import EvalTransform

    path = write_divx_avi(tmp_path / "hmdb.avi", frames=10, title="brush_hair é")  # 11 packets, 10 frames
    r = open_reader(str(path), "pyav")
    x = r.read(segment_indices(len(r), 8, train=False))
    r.close()
    card = {"frames": 8, "size": 32, "resize_short_side": 32, "mean": list(PRE["mean"]), "std": list(PRE["std"])}
    ours = EvalTransform(PRE, scale=1.0)(x)[0].numpy()
    assert abs(ours - run_exported.clip(str(path), card)).max() <= 2.01 / 255 / min(PRE["std"])


def test_the_runner_makes_tkvrs_clips_from_real_videos():
    """examples/run_exported.py reads and samples as tkvr does: the same frames, resized and
    cropped alike (within two levels of 255: PIL's bicubic against torchvision's), on every real
    clip (AVI, MKV, WebM, MP4)."""
    from conftest import realdata

    from tkvr.data.sampling import segment_indices
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import open_reader

    folder = realdata("videos")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import run_exported
    finally:
        sys.path.pop(0)
    for size, short in ((224, 256),):
        pre = {"size": size, "mean": (0.48, 0.46, 0.41), "std": (0.27, 0.26, 0.28)}
        card = {"frames": 8, "size": size, "resize_short_side": short, "mean": list(pre["mean"]),
                "std": list(pre["std"])}
        for path in sorted(folder.iterdir()):
            r = open_reader(str(path), "torchcodec")
            x = r.read(segment_indices(len(r), 8, train=False))
            r.close()
            ours = EvalTransform(pre, scale=short / size)(x)[0].numpy()
            theirs = run_exported.clip(str(path), card)
            assert abs(ours - theirs).max() <= 2.01 / 255 / min(pre["std"]), (path.name, size)


def test_a_peer_that_dies_is_named_before_the_launcher_stops_the_run(capsys):
    """Lightning's launcher says only in a debug log which process died before it kills the run."""
    import logging

    from lightning_fabric.utilities.rank_zero import rank_prefixed_message

    from tkvr.base.progress import last_word
    from tkvr.run.launch import watch_peers

    watch_peers()
    log = logging.getLogger("lightning_fabric.strategies.launchers.subprocess_script")
    log.info(rank_prefixed_message("Child process with PID 4242 terminated with code -9. Forcefully terminating "
                                   "all other processes to avoid zombies", rank=1))
    err = capsys.readouterr().err
    assert err.startswith("tkvr: error: the process of rank 1 (pid 4242) ended (killed by signal 9)"), err
    # a refusal of that process alone (rank 0 was fine): its line, which it left for rank 0
    last_word(os.getpid(), 2).write_text("3 of 4 training videos of this shard are unreadable")
    log.info(rank_prefixed_message("Child process with PID 4343 terminated with code 1. Forcefully", rank=2))
    err = capsys.readouterr().err
    assert "rank 2 (pid 4343) ended (exit code 1: 3 of 4 training videos of this shard" in err, err
    assert not last_word(os.getpid(), 2).exists()


def test_twenty_loaders_with_readers_after_decoding_in_process(tmp_path):
    """Reader processes start from a fork server, never by forking this (threaded) process: one
    that decoded video in-process before starts 20 loaders with a reader each, one after another,
    as a few-shot sweep does. (Forked, such a process once hung a test run for 90 minutes.)"""
    from conftest import PRE, write_clip

    from tkvr.data.loader import ClipDataset, Scoring, loader
    from tkvr.data.specs import Sample
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import open_reader

    paths = [str(write_clip(tmp_path / f"c{i}.mp4", frames=8, seed=i)) for i in range(3)]
    held = open_reader(paths[0], "torchcodec")
    held.read([0, 5])  # FFmpeg's threads alive in this process while readers start
    ds = ClipDataset([Sample(p, i) for i, p in enumerate(paths)], 2, EvalTransform(PRE), mode=Scoring(warn=False))
    for _ in range(20):
        dl = loader(ds, 2, False, 1, 0, 0, 1)
        assert dl.multiprocessing_context.get_start_method() == "forkserver"
        assert [b["label"].tolist() for b in dl] == [[0, 1], [2]]
    held.close()


# ---------------------------------------------------------------- a fuzz of every file tkvr reads back
def mutants(data: bytes, rng, text: bool):
    """Truncations, random bytes, flipped bytes, non-UTF-8 bytes and (text) NaN and wrong types."""
    for _ in range(6):
        yield data[: rng.randrange(len(data))]
    yield bytes(rng.randrange(256) for _ in range(300))
    for _ in range(4):
        b = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b)
    at = rng.randrange(len(data))
    yield data[:at] + b"\xff\xfe" + data[at:]
    if text:
        s = data.decode("utf-8", "replace")
        nums = [m for m in re.finditer(r"\d+(\.\d+)?(e-?\d+)?", s)]
        for m in rng.sample(nums, min(4, len(nums))):
            for new in ("nan", "-inf", "[1, 2]", "{a: 1}", "'x'", ""):
                yield (s[: m.start()] + new + s[m.end():]).encode()


def readers(trained, tmp_path):
    """kind -> (the file's good bytes, a function that reads a path as tkvr does)."""
    from tkvr.base.rows import Rows
    from tkvr.base.settings import build, from_run
    from tkvr.data.classes import read_labels_file
    from tkvr.data.specs import read_list
    from tkvr.model.text import load_embeddings
    from tkvr.run.checkpoint import config_of, read_checkpoint
    from tkvr.run.logs import EPOCH_COLUMNS, STEP_COLUMNS, read_log
    from tkvr.run.protocols import read_sample
    from tkvr.run.settings import TrainConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import run_exported
    finally:
        sys.path.pop(0)

    def resume(p):  # what `train --resume auto` does with the run's config.yaml
        kw = {k: None for k in ("out", "resume")}
        cfg = build(TrainConfig, {k: v for k, v in from_run(kw, set(), p, config_cls=TrainConfig).items()
                                  if v is not None})
        cfg.validate()

    def checkpoint(p):
        config_of(read_checkpoint(str(p)))

    def sidecar(p):
        try:
            run_exported.sidecar(str(p)[: -len(".json")])
        except SystemExit as e:  # the runner's one line
            assert isinstance(e.code, str) and "\n" not in e.code

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes")
    card = {"classes": ["a", "b"], "frames": 2, "size": 32, "resize_short_side": 32, "mean": [0.5] * 3,
            "std": [0.25] * 3, "model_file": "m.onnx", "model_sha256": hashlib.sha256(b"model bytes").hexdigest()}
    from tkvr.run.export import card_digest

    card["card_sha256"] = card_digest(card)
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import Made, encode_classes, save_embeddings

    emb = tmp_path / "emb.pt"
    save_embeddings(emb, encode_classes(build_backbone("tiny"), ["a", "b"], ["{}"]), ["a", "b"], Made("tiny", None, tuple(["{}"]), "text"))
    train = [SimpleNamespace(path=f"/d/{c}{i}.mp4", label=j) for j, c in enumerate("ab") for i in range(2)]
    return {
        "checkpoint": ((trained / "checkpoints" / "last.pt").read_bytes(), checkpoint),
        "config.yaml": ((trained / "config.yaml").read_bytes(), resume),
        "metrics.csv": ((trained / "metrics.csv").read_bytes(), lambda p: read_log(p, EPOCH_COLUMNS)),
        "steps.csv": ((trained / "steps.csv").read_bytes(), lambda p: read_log(p, STEP_COLUMNS)),
        "--out rows": (b"file,label_1,score_1,error\na.mp4,x,0.9,\nb.mp4,,,b.mp4: empty\n",
                       lambda p: Rows(str(p), 1, False, True)),
        "sidecar": (json.dumps(card).encode(), sidecar),
        "list file": (b"a/x.mp4 0\nb/y.mp4 12 1\nc z.mp4 b\n", lambda p: read_list(p, tmp_path, ["a", "b"])),
        "labels": (b"id,name\n0,a\n1,\"b, c\"\n", read_labels_file),
        "sample.json": (json.dumps({"samples": [["/d/a0.mp4", "a"], ["/d/b1.mp4", "b"]]}).encode(),
                        lambda p: read_sample(str(p), train, ["a", "b"])),
        "embeddings": (emb.read_bytes(), lambda p: load_embeddings(p, ["a", "b"], None)),
    }


def test_every_file_read_back_is_refused_in_one_line_never_a_traceback(trained, tmp_path):
    """Each reader gets ~40 damaged copies of a good file; any outcome but a TkvrError (one line)
    or a clean read fails. The good file reads."""
    from tkvr.base.errors import TkvrError

    rng = random.Random(0)
    kinds = readers(trained, tmp_path)
    for kind, (good, read) in kinds.items():
        suffix = {"checkpoint": ".pt", "embeddings": ".pt", "config.yaml": ".yaml", "sample.json": ".json",
                  "list file": ".txt", "labels": ".txt", "sidecar": ".onnx.json"}.get(kind, ".csv")
        path = (tmp_path / kind.replace(" ", "_").replace("-", "")).with_suffix(suffix)
        if kind == "sidecar":
            path = tmp_path / "m.onnx.json"
        path.write_bytes(good)
        read(path)
        for n, bad in enumerate(mutants(good, rng, text=suffix not in (".pt",))):
            path.write_bytes(bad)
            try:
                read(path)
            except TkvrError as e:
                assert "\n" not in str(e).strip(), (kind, n, str(e))
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{kind}, mutant {n}: {type(e).__name__}: {e}"[:400])
        # edits that keep the file well-formed but change what it means: refused, not used
        strict = read if kind != "sidecar" else lambda p: runner().sidecar(str(p)[: -len(".json")])
        for n, bad in enumerate(meaning_edits(kind, good)):
            path.write_bytes(bad)
            with pytest.raises((TkvrError, SystemExit)) as e:  # the runner's refusal: its one line
                strict(path)
            assert "\n" not in str(e.value).strip(), (kind, n, str(e.value))


def runner():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import run_exported
    finally:
        sys.path.pop(0)
    return run_exported


def meaning_edits(kind: str, good: bytes):
    """Well-formed copies of a good file whose meaning changed (issue 41): swapped class names in a
    checkpoint or a sidecar, a video listed twice in a sample, a NUL inside a class name."""
    import io

    if kind == "checkpoint":
        ck = torch.load(io.BytesIO(good), weights_only=True)
        ck["classes"][0], ck["classes"][1] = ck["classes"][1], ck["classes"][0]
        buf = io.BytesIO()
        torch.save(ck, buf)
        yield buf.getvalue()
    elif kind == "sidecar":
        card = json.loads(good)
        card["classes"].reverse()
        yield json.dumps(card).encode()
    elif kind == "sample.json":
        rows = json.loads(good)["samples"]
        yield json.dumps({"samples": rows + rows[:1]}).encode()
    elif kind == "labels":
        yield good.replace(b"0,a", b"0,a\x00b")
    elif kind == "embeddings":
        data = torch.load(io.BytesIO(good), weights_only=True)
        data["classes"].reverse()  # the checksum kept
        buf = io.BytesIO()
        torch.save(data, buf)
        yield buf.getvalue()
    elif kind == "metrics.csv":
        lines = good.decode().splitlines()
        at = lines[0].split(",").index("val_top1")
        row = lines[1].split(",")
        row[at] = "nan"
        yield ("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n").encode()


def test_smoke_runs_validate_the_weights_they_stopped_with(run_cli, tmp_path):
    """--max-steps inside the first epoch: train reports the validation of the weights it has,
    marked partial, no sentinel numbers; fewshot ends with its table, marked partial."""
    code, out, err = run_cli("train", *fast(data="toy", limit_batches=3, limit_val_batches=1), "--epochs", "2",
                             "--max-steps", "2", "--out", tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["partial"] is True and report["stopped_by"] == "--max-steps 2" and report["steps"] == 2
    assert report["best_top1"] is None and report["final"]["num_samples"] == 16  # one val batch of 16
    assert 0 <= report["final"]["top1"] <= 100
    assert "final, stopped at step 2 by --max-steps (a partial run): top-1" in out and "best top-1" not in out
    code, out, err = run_cli("fewshot", "--data", "toy", "--backbone", "tiny", "--frames", "2", "--batch-size", "4",
                             "--workers", "0", "--warmup", "0", "--shots", "1", "--max-steps", "1",
                             "--limit-val-batches", "1", "--out", tmp_path / "fs")
    assert code == 0, err
    table = json.loads((tmp_path / "fs" / "fewshot.json").read_text())
    assert table["1"]["partial"] is True and len(table["1"]["runs"]) == 1, table
    assert "(partial)" in out and "--max-steps stopped those runs early" in out


# ---------------------------------------------------------------- edits that keep a file well-formed (issue 41)
def test_1_swapped_class_names_in_a_checkpoint_are_refused_by_every_reader(run_cli, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        ck["classes"][0], ck["classes"][1] = ck["classes"][1], ck["classes"][0]  # the checksum kept
        torch.save(ck, run / "checkpoints" / name)
    (tmp_path / "none.mp4").write_bytes(b"")
    for command, args in commands_reading(run, tmp_path).items():
        code, _, err = run_cli(*args)
        assert code == 1 and "checksum" in err and "class names" in err, (command, err)
        assert len(err.strip().splitlines()) == 1, (command, err)
    assert not (tmp_path / "m.pt2").exists()


def test_1_a_checkpoint_sealed_before_names_were_covered_still_reads(trained, tmp_path):
    from tkvr.run.checkpoint import checksum, read_checkpoint

    ck = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert ck["checksum"].startswith("v2:")
    ck["checksum"] = checksum(ck, plain=False)  # the tensors-only digest of earlier files
    torch.save(ck, tmp_path / "old.pt")
    assert read_checkpoint(str(tmp_path / "old.pt"))["classes"] == ck["classes"]


def test_2_a_sidecar_with_its_classes_reordered_is_refused_by_the_runner(run_cli, trained, tmp_path):
    run_exported = runner()
    code, _, err = run_cli("export", "--checkpoint", trained, "--out", tmp_path / "m.pt2")
    assert code == 0, err
    assert run_exported.sidecar(str(tmp_path / "m.pt2"))["classes"]  # as written: it reads
    side = tmp_path / "m.pt2.json"
    card = json.loads(side.read_text())
    for edit in (lambda c: c["classes"].reverse(), lambda c: c.update(size=c["size"] + 1),
                 lambda c: c["mean"].__setitem__(0, 0.0)):
        changed = json.loads(json.dumps(card))
        edit(changed)
        side.write_text(json.dumps(changed))
        with pytest.raises(SystemExit) as e:
            run_exported.sidecar(str(tmp_path / "m.pt2"))
        assert "changed after export" in str(e.value)


def test_4_a_gradient_clip_that_is_not_positive_is_refused(run_cli, tmp_path):
    for bad in ("-1", "0"):
        code, _, err = run_cli("train", *fast(data="toy"), "--grad-clip", bad, "--out", tmp_path / "r", "--dry-run")
        assert_user_error(code, err, f"--grad-clip {bad}", "positive")


def test_7_quoted_names_in_the_labels_flag_keep_their_comma():
    from tkvr.data.classes import resolve_classes

    assert resolve_classes('"push, pull",x', "--labels") == ["push, pull", "x"]
    assert resolve_classes("a, b,c", "--labels") == ["a", "b", "c"]


def test_8_control_characters_in_class_names_are_refused(run_cli, tmp_path):
    from tkvr.base.errors import TkvrError
    from tkvr.data.classes import read_labels_file, resolve_classes

    (tmp_path / "labels.txt").write_bytes(b"a\nb\x00c\n")
    with pytest.raises(TkvrError, match=r"labels.txt:2: holds a control character"):
        read_labels_file(tmp_path / "labels.txt")
    code, _, err = run_cli("embed", "--classes", tmp_path / "labels.txt", "--backbone", "tiny",
                           "--out", tmp_path / "e.pt")
    assert_user_error(code, err, "labels.txt:2", "control character")
    with pytest.raises(TkvrError, match="control character"):
        resolve_classes("a,b\tc", "--labels")
    assert not (tmp_path / "e.pt").exists()


def test_9_a_sample_file_listing_a_video_twice_is_refused(tmp_path):
    from tkvr.base.errors import TkvrError
    from tkvr.run.protocols import read_sample

    train = [SimpleNamespace(path=f"/d/{c}{i}.mp4", label=j) for j, c in enumerate("ab") for i in range(2)]
    (tmp_path / "s.json").write_text(json.dumps({"samples": [["/d/a0.mp4", "a"], ["/d/b1.mp4", "b"],
                                                             ["/d/a0.mp4", "a"]]}))
    with pytest.raises(TkvrError, match=r"s.json:3: /d/a0.mp4 is listed twice \(first at entry 1\)"):
        read_sample(str(tmp_path / "s.json"), train, ["a", "b"])


def test_12_a_seed_beyond_64_bits_is_refused_before_anything_is_written(run_cli, tmp_path):
    code, _, err = run_cli("train", *fast(data="toy"), "--seed", "99999999999999999999", "--out", tmp_path / "r")
    assert_user_error(code, err, "--seed 99999999999999999999")
    assert not (tmp_path / "r").exists()


def test_13_a_nul_byte_in_a_predict_list_is_one_line(run_cli, tmp_path):
    (tmp_path / "list.txt").write_bytes(b"a.mp4\nb\x00.mp4\n")
    code, _, err = run_cli("predict", tmp_path / "list.txt", "--backbone", "tiny", "--labels", "a,b")
    assert_user_error(code, err, "list.txt:2", "NUL byte")
    from tkvr.data.video import why_missing

    assert "NUL" in why_missing("x\x00y.mp4")


def test_19_21_a_folder_given_as_a_file_is_named_so(run_cli, tmp_path):
    from tkvr.base.errors import TkvrError
    from tkvr.base.fileio import safe_load

    (tmp_path / "zoo").mkdir()
    code, _, err = run_cli("convert", tmp_path / "zoo", "--labels", "a,b", "--out", tmp_path / "r")
    assert_user_error(code, err, "zoo: a folder", "model file in it")
    with pytest.raises(TkvrError, match="is a folder, not a file"):
        safe_load(tmp_path / "zoo", "--checkpoint file")


def test_3_an_embeddings_file_changed_on_disk_or_holding_nan_is_refused_naming_it(tmp_path):
    from tkvr.base.errors import TkvrError
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import Made, encode_classes, load_embeddings, save_embeddings

    emb = tmp_path / "emb.pt"
    rows = encode_classes(build_backbone("tiny"), ["a", "b"], ["{}"])
    save_embeddings(emb, rows, ["a", "b"], Made("tiny", None, tuple(["{}"]), "text"))
    assert torch.equal(load_embeddings(emb, ["a", "b"])["embeddings"], rows.float())
    data = torch.load(emb, weights_only=True)
    for change in (lambda d: d["embeddings"].__setitem__((0, 0), d["embeddings"][0, 0] + 1e-3),
                   lambda d: d["classes"].reverse()):
        bad = {k: (v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v)
               for k, v in data.items()}
        change(bad)
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(TkvrError, match=r"bad.pt: its contents .* do not match the checksum"):
            load_embeddings(tmp_path / "bad.pt")
    old = {k: v for k, v in data.items() if k != "checksum"}  # a file from before checksums
    old["embeddings"] = old["embeddings"].clone()
    old["embeddings"][1, 2] = float("nan")
    torch.save(old, tmp_path / "nan.pt")
    with pytest.raises(TkvrError, match=r"nan.pt: row 1 \('b'\) holds NaN"):
        load_embeddings(tmp_path / "nan.pt")


def test_5_nan_in_a_run_log_is_refused_naming_file_and_line(trained, tmp_path):
    from tkvr.base.errors import TkvrError
    from tkvr.run.logs import EPOCH_COLUMNS, read_log

    lines = (trained / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("val_top1")] = "nan"
    (tmp_path / "metrics.csv").write_text("\n".join([lines[0], ",".join(row)]) + "\n")
    with pytest.raises(TkvrError, match=r"metrics.csv:2: val_top1 'nan' is not a finite number"):
        read_log(tmp_path / "metrics.csv", EPOCH_COLUMNS)


READER_RUN = """
import os, sys, torch
from tkvr.base.procs import loader_args, start_readers
start_readers()
dl = torch.utils.data.DataLoader(list(range(1000)), batch_size=1, **loader_args(1))
it = iter(dl)
next(it)
print("reading", flush=True)
sys.stdin.read()  # holds until killed
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the processes")
def test_10_a_killed_command_leaves_no_reader_server_or_tracker(tmp_path):
    """kill -9 of the command alone (not its group): its reader, the fork server the reader came
    from and the resource tracker all end by themselves."""
    import time

    p = subprocess.Popen([sys.executable, "-c", READER_RUN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "reading"
    below = descendants(p.pid)
    names = {c: Path(f"/proc/{c}/cmdline").read_bytes() for c in below}
    assert sum(b"forkserver" in n for n in names.values()) >= 2, names  # the server and its reader
    assert any(b"resource_tracker" in n for n in names.values()), names
    p.kill()
    p.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(c) for c in below):
        time.sleep(0.1)
    left = [c for c in below if alive(c)]
    for c in left:
        os.kill(c, 9)
    assert not left, {c: names[c][:80] for c in left}


def test_11_a_killed_writers_temporary_files_go_with_the_next_holder(tmp_path):
    from tkvr.base.fileio import hold

    out = tmp_path / "m.pt2"
    stale = [tmp_path / ".m.pt2.k3j_x9ab.pt2", tmp_path / ".m.pt2.json.0a1b2c3d.tmp"]
    others = [tmp_path / ".m.pt2.csv.0a1b2c3d.tmp", tmp_path / ".m.pt2.notes", tmp_path / "m.pt2.json"]
    run = tmp_path / "run"
    in_run = [run / "checkpoints" / ".last.pt.tmp", run / ".config.yaml.a1b2c3d4.tmp"]
    data = [run / "checkpoints" / "last.pt", run / "sub" / "deeper" / ".x.a1b2c3d4.tmp"]
    for f in stale + others + in_run + data:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    with hold(out, "--out", "export"):
        pass
    with hold(run, "--out", "train", folder=True):
        pass
    assert not any(f.exists() for f in stale + in_run)
    assert all(f.exists() for f in others + data)  # another output's, a user's, a run's, too deep


def test_14_22_convert_says_what_a_released_file_can_be(run_cli, tmp_path):
    from test_convert import released_file

    from tkvr.base.errors import TkvrError
    from tkvr.model.backbones import build_backbone
    from tkvr.model.released import Layout
    from tkvr.model.video_model import text_size
    from tkvr.run.convert import backbone_for

    released_file(tmp_path / "f.pt", fusion_layers=1)
    positions = text_size(build_backbone("tiny", "none"))[1]
    code, _, err = run_cli("convert", tmp_path / "f.pt", "--labels", "a,b", "--frames", positions + 1,
                           "--out", tmp_path / "r")
    assert_user_error(code, err, f"--frames {positions + 1}", f"{positions} frame positions",
                      f"--frames {positions} or fewer")
    assert not (tmp_path / "r" / "checkpoints").exists()
    # a visual encoder no CLIP has: the nearest named with what differs
    with pytest.raises(TkvrError, match=r"the nearest, ViT-B/16, differs in image size\); .* cannot convert"):
        backbone_for(Layout("vit", 288, 768, 12, 512, patch=16), None, "f.pt")
    # one open_clip has without OpenAI weights: named, and converting with it works
    released_file(tmp_path / "s.pt", backbone="ViT-S-32", fusion_layers=0)
    code, _, err = run_cli("convert", tmp_path / "s.pt", "--labels", "a,b", "--out", tmp_path / "s")
    assert_user_error(code, err, "open_clip's ViT-S-32 has it", "--backbone")
    torch.save(torch.nn.functional.normalize(torch.randn(2, 384), dim=-1), tmp_path / "e.pt")
    code, out, err = run_cli("convert", tmp_path / "s.pt", "--labels", "a,b", "--backbone", "ViT-S-32",
                             "--embeddings", tmp_path / "e.pt", "--out", tmp_path / "s")
    assert code == 0, err
    assert "ViT-S-32" in out and (tmp_path / "s" / "checkpoints" / "last.pt").is_file()


def test_15_ctrl_c_in_prepare_is_one_line_from_every_process(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C sends), while the encoders
    start: tkvr's line and exit 130, no traceback from any of them."""
    import signal
    import time

    from conftest import write_clip

    for i in range(4):
        write_clip(tmp_path / "src" / "ab"[i % 2] / f"c{i}.mp4", frames=30, seed=i)
    p = subprocess.Popen([sys.executable, "-m", "tkvr", "prepare", "--data", tmp_path / "src", "--out",
                          tmp_path / "out", "--workers", "2"], start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    def ready():  # the tracker and both encoders started (still importing: where tracebacks came
        # from), and the command answering Ctrl-C again (not in the milliseconds it starts them)
        status = Path(f"/proc/{p.pid}/status").read_text()
        ignored = int(re.search(r"SigIgn:\s*([0-9a-f]+)", status).group(1), 16)
        return len(descendants(p.pid)) >= 3 and not ignored & (1 << (signal.SIGINT - 1))

    deadline = time.time() + 60
    while not ready() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip() == "tkvr: interrupted; everything written before it is kept", err


def test_16_an_edited_config_yaml_is_named_not_a_flag(run_cli, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    text = (run / "config.yaml").read_text()
    assert "  frames: 2\n" in text
    (run / "config.yaml").write_text(text.replace("  frames: 2\n", "  frames: 4\n", 1))
    code, _, err = run_cli("train", "--out", run, "--resume", "auto")
    assert_user_error(code, err, f"{run / 'config.yaml'} says frames: 4", "trained with 2",
                      "set frames: 2 back")
    assert "--frames" not in err
    (run / "config.yaml").write_text(text)
    code, _, err = run_cli("train", "--out", run, "--resume", "auto", "--frames", "4")
    assert_user_error(code, err, "different --frames (2, now 4); drop --frames")


def test_17_an_audio_only_file_says_so_with_either_decoder(tmp_path):
    from conftest import write_audio_only

    from tkvr.data.video import UnreadableVideo, open_reader

    path = write_audio_only(tmp_path / "speech.m4a")
    for decoder in ("torchcodec", "pyav"):
        with pytest.raises(UnreadableVideo) as e:
            open_reader(str(path), decoder)
        assert str(e.value) == f"{path}: no video stream (audio only?)", decoder


def test_18_a_full_disk_during_predict_names_the_out_file(run_cli, trained, tmp_path, monkeypatch):
    import errno

    from tkvr.data.specs import resolve

    clips = [s.path for s in resolve("toy").split("val")][:2]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli("predict", *clips, "--checkpoint", trained, "--workers", "0", "--out",
                           tmp_path / "p.csv")
    assert code == 1, err
    assert err.strip().splitlines()[-1] == (
        f"tkvr: error: cannot write --out {tmp_path / 'p.csv'}: No space left on device; the rows before are "
        "kept (a row cut short is dropped on resume): free space and rerun with --resume")


def test_20_a_first_checkpoint_on_a_full_disk_claims_no_earlier_one(tmp_path):
    import errno

    from tkvr.base.errors import Fault
    from tkvr.run.checkpoint import save_checkpoint

    class Full:
        global_rank = 0

        def save(self, path, state):
            raise OSError(errno.ENOSPC, "No space left on device")

        def barrier(self):
            pass

    path = tmp_path / "last.pt"
    with pytest.raises(Fault, match="No space left on device; there was none before it"):
        save_checkpoint(Full(), path, {"x": 1})
    path.write_bytes(b"an earlier checkpoint")
    with pytest.raises(Fault, match="No space left on device; the previous one is intact"):
        save_checkpoint(Full(), path, {"x": 1})
    assert path.read_bytes() == b"an earlier checkpoint"
