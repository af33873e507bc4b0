"""tkvr predict (tkvr.run.predict): zero-shot from a backbone, folders and list files, rows written
as they go and resumed after a kill, long videos in windows and segments placed by timestamps."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import assert_wrote, toy_frames, write_clip, write_timed

from tkvr.data.specs import resolve
from tkvr.data.toy import write_video


def test_predict_says_when_files_did_not_read(run_cli, tmp_path):
    good = write_clip(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    code, out, err = run_cli("predict", good, tmp_path / "bad.mp4", "--backbone", "tiny", "--labels", "a,b,c,d,e,f",
                             "--json", tmp_path / "p.json")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"tkvr: error: 1 of 2 inputs could not be read (e.g. {tmp_path / 'bad.mp4'}: "), err
    preds = json.loads((tmp_path / "p.json").read_text())
    assert len(preds[0]["labels"]) == 5 and "error" in preds[1]  # the readable file still got its labels


def test_zero_shot_from_a_backbone_equals_zeroshot_without_training(run_cli, tmp_path):
    """--backbone toy alone (TAP, the names' frozen head, the toy CLIP's own prompt and scale) scores
    the unseen classes' val clips exactly as `tkvr zeroshot --no-train` does."""
    flags = ["--frames", "8", "--test-scale", "1", "--workers", "0"]
    code, _, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", "toy@unseen", "--no-train", "--backbone",
                           "toy", "--temporal", "tap", "--views", "1x1", *flags, "--out", tmp_path / "zs",
                           "--json", tmp_path / "zs.json")
    assert code == 0, err
    expected = json.loads((tmp_path / "zs.json").read_text())["without_training"]["top1"]
    unseen = resolve("toy@unseen")
    clips = unseen.split("val")
    (tmp_path / "clips.txt").write_text("".join(f"{s.path} {s.label}\n" for s in clips))  # a dataset list
    (tmp_path / "names.txt").write_text("".join(c + "\n" for c in unseen.classes))
    code, _, err = run_cli("predict", tmp_path / "clips.txt", "--backbone", "toy", "--labels", tmp_path / "names.txt",
                           *flags, "--top-k", "1", "--out", tmp_path / "p.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == [s.path for s in clips]
    right = sum(r["labels"][0] == unseen.classes[s.label] for r, s in zip(rows, clips))
    assert 100 * right / len(clips) == pytest.approx(expected, abs=1e-4)  # zeroshot's is float32
    assert expected > 3 * 100 / len(unseen.classes)  # and it is zero-shot recognition, not chance


def test_a_killed_folder_run_resumes_with_every_input_once(tmp_path):
    src = resolve("toy").split("val")
    folder = tmp_path / "clips"
    for n in range(200):  # 200 clips in nested folders, and files that are not inputs
        sub = folder / f"part{n % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        os.link(src[n].path, sub / f"clip{n:03d}.mp4")
    (folder / "README.txt").write_text("notes\n")
    (folder / "part0" / "labels.csv").write_text("a\n")
    out = tmp_path / "tags.csv"
    cmd = [sys.executable, "-m", "tkvr", "predict", str(folder), "--backbone", "tiny", "--labels", "left,right,up",
           "--frames", "2", "--batch-size", "2", "--workers", "0", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while p.poll() is None and (not out.exists() or out.read_text().count("\n") < 40):
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    with open(out, "a") as f:
        f.write(f"{folder}/part1/clip001.mp4,le")  # as a kill in the middle of a line leaves it
    before = out.read_text().count("\n") - 1
    assert 20 <= before < 200
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"--resume: {before} inputs already in {out}, {200 - before} to score" in r.stdout
    assert "2 files in the folders skipped (not a video or an image)" in r.stdout
    rows = list(csv.DictReader(out.open()))
    files = [row["file"] for row in rows]
    assert sorted(files) == sorted(str(p) for p in folder.rglob("*.mp4")) and len(set(files)) == 200
    assert all(row["label_1"] in ("left", "right", "up") and float(row["score_1"]) > 0 for row in rows)


LABELS = "a red square,a green circle,a purple triangle"  # toy classes told apart zero-shot


@pytest.fixture(scope="module")
def three_clips():
    from tkvr.data.toy import toy_classes

    return torch.cat([toy_frames(toy_classes().index(n)) for n in LABELS.split(",")])  # [48, 3, 64, 64]


@pytest.mark.parametrize("rate, decoder", [("constant", "torchcodec"), ("variable", "torchcodec"),
                                           ("variable", "pyav")])
def test_a_long_video_becomes_segments_placed_by_timestamps(run_cli, tmp_path, three_clips, rate, decoder):
    """Three toy clips back to back: three segments, boundaries within one stride of the truth. In
    the variable-rate file the middle clip's frames last twice as long (8 s in all, cuts at 2 and
    6 s); placed by frame count instead, the cuts would be at 2.7 and 5.3 s."""
    if rate == "constant":
        path, truth = tmp_path / "long.mp4", (2.0, 4.0)
        write_video(three_clips, path, fps=8)
    else:
        path, truth = tmp_path / "vfr.mp4", (2.0, 6.0)
        times = [j / 8 for j in range(16)] + [2 + j / 4 for j in range(16)] + [6 + j / 8 for j in range(16)]
        write_timed(three_clips, times, path)
    stride = 0.5
    out = tmp_path / "w.csv"
    extra = ["--plot", tmp_path / "timeline.png"] if rate == "constant" else []
    code, text, err = run_cli("predict", path, "--backbone", "toy", "--labels", LABELS, "--window", "1",
                              "--stride", stride, "--frames", "4", "--test-scale", "1", "--workers", "0",
                              "--decoder", decoder, "--out", out, "--json", tmp_path / "r.json", *extra)
    assert code == 0, err
    assert_wrote(text, out, tmp_path / "w.segments.csv", *extra[1:], tmp_path / "r.json")
    segs = json.loads((tmp_path / "r.json").read_text())[0]["segments"]
    assert [s["label"] for s in segs] == LABELS.split(","), segs
    for s, cut in zip(segs, truth):
        assert abs(s["end"] - cut) <= stride, segs
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == int(rows[0]["windows"]) and [int(r["window"]) for r in rows] == list(range(len(rows)))
    saved = list(csv.DictReader((tmp_path / "w.segments.csv").open()))
    assert [(float(r["start"]), float(r["end"]), r["label"]) for r in saved] == \
        [(s["start"], s["end"], s["label"]) for s in segs]
    if extra:
        assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_drops_a_video_whose_windows_are_not_all_written(tmp_path):
    """A kill while a video's rows were being written leaves some of them: that video is scored
    again, its partial rows removed first; complete videos and error rows stay."""
    from tkvr.base.rows import Rows

    out = tmp_path / "w.csv"
    head = "file,window,windows,start,end,label_1,score_1,error\n"
    out.write_text(head + "a.mp4,0,2,0.0,2.0,x,0.9,\na.mp4,1,2,1.0,3.0,y,0.8,\n"
                   "b.mp4,0,0,0.0,0.0,,,b.mp4: not a video\n"
                   "c.mp4,0,3,0.0,2.0,x,0.7,\nc.mp4,1,3,1.0,3.0,x,0.6,\nc.mp4,2,3")
    rows = Rows(str(out), 1, windows=True, resume=True)
    rows.close()
    assert sorted(rows.old) == ["a.mp4", "b.mp4"]
    assert rows.old["a.mp4"][1] == {"file": "a.mp4", "window": 1, "windows": 2, "start": 1.0, "end": 3.0,
                                    "labels": ["y"], "scores": [0.8]}
    assert out.read_text() == head + "a.mp4,0,2,0.0,2.0,x,0.9,\na.mp4,1,2,1.0,3.0,y,0.8,\n" \
                                     "b.mp4,0,0,0.0,0.0,,,b.mp4: not a video\n"


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_long_video_is_opened_once_and_read_front_to_back(tmp_path, monkeypatch, three_clips, suffix):
    """Overlapping windows (1 s every 0.25 s) in chunks of 2: one reader per video, times asked
    for in order; an AVI (frames counted from the start) is decoded from the top once, not per chunk."""
    import tkvr.data.windows as windows
    import tkvr.run.predict as pred
    from tkvr.commands.predict import PredictConfig
    from tkvr.data.video import _InOrder

    path = tmp_path / f"long{suffix}"
    write_video(three_clips, path, fps=8)
    opened, asked, restarts = [], [], []
    real_open, real_read = pred.open_reader, _InOrder.read

    def counting_open(p, *a, **k):
        reader = real_open(p, *a, **k)
        opened.append(p)
        at = reader.read_at
        reader.read_at = lambda seconds: asked.append(list(seconds)) or at(seconds)
        return reader

    def counting_read(self, indices):
        restarts.append(self.frames is None or min(indices) < self.next)
        return real_read(self, indices)

    monkeypatch.setattr(pred, "open_reader", counting_open)  # the up-front --window check
    monkeypatch.setattr(windows, "open_reader", counting_open)  # the windows' reader
    monkeypatch.setattr(_InOrder, "read", counting_read)
    r = pred.predict(PredictConfig(files=[str(path)], backbone="toy", labels=LABELS, window=1.0, stride=0.25,
                                   frames=4, batch_size=2, workers=0))
    assert len(r[0]["windows"]) == 21 and len(asked) == 3  # 24 distinct times (windows share them), 8 a call
    assert opened == [str(path)] * 2  # the up-front --window check, then the one read
    times = [x for call in asked for x in call]
    assert times == sorted(times) and len(times) == len(set(times))
    if suffix == ".avi":
        assert sum(restarts) == 1, restarts


def test_piped_predict_says_its_progress_and_the_toy_clip_its_vocabulary(run_cli, tmp_path):
    """In a pipe (here: captured) predict prints a line as each tenth of the inputs is done, not
    nothing until the end; the toy CLIP warns once that words outside the toy world mean nothing."""
    clips = []
    for i in range(12):
        clips.append(tmp_path / f"c{i}.mp4")
        write_clip(clips[-1], frames=4, size=32, seed=i)
    labels = "a red circle,riding segway,waving"
    code, out, err = run_cli("predict", *clips, "--backbone", "toy", "--labels", labels, "--frames", "2",
                             "--workers", "0", "--batch-size", "4")
    assert code == 0, err
    progress = [ln for ln in out.splitlines() if ln.startswith("predicting 12 inputs with toy")]
    assert [ln.rsplit(" ", 1)[1] for ln in progress] == [f"{n}/12" for n in range(1, 13)]  # 12 < 10 x 10
    assert out.count("the toy CLIP knows only the toy world's words") == 1
    assert "2 of 3 labels have others (e.g. 'riding segway')" in out
    code, out, err = run_cli("predict", clips[0], "--backbone", "toy", "--labels", "a red circle,a blue ring",
                             "--frames", "2", "--workers", "0")
    assert code == 0 and "toy CLIP knows only" not in out, err


def test_plain_progress_lines_come_each_tenth(capsys):
    from tkvr.base.progress import bar

    with bar(95, "predicting 95 inputs", lines=True) as tick:
        for _ in range(95):
            tick()
    said = capsys.readouterr().out.splitlines()
    assert [ln.rsplit(" ", 1)[1] for ln in said] == [f"{n}/95" for n in range(9, 95, 9)] + ["95/95"]
    with bar(95, "quiet", lines=False) as tick:  # without lines: nothing in a pipe
        tick()
    assert capsys.readouterr().out == ""
