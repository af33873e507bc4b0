"""Every supported dataset layout, built tiny in a temp folder and read back."""
import json

import pytest
import torch
from conftest import (
    assert_user_error,
    list_dataset,
    write_clip,
)

from tkvr.base.errors import TkvrError
from tkvr.data.loader import read_clip
from tkvr.data.specs import resolve
from tkvr.data.video import Reading, UnreadableVideo


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_list_files_with_labels_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("id,name\n0,riding a bike\n1,playing guitar\n")
    (tmp_path / "train.txt").write_text("v/a.mp4 0\nv/b.mp4 1\nv/my clip.mp4 1\n")
    (tmp_path / "val.txt").write_text("v/c.mp4 playing guitar\n")
    src = resolve(str(tmp_path))
    assert src.classes == ["riding a bike", "playing guitar"]
    assert [(s.path, s.label) for s in src.split("train")] == [
        (str(tmp_path / "v/a.mp4"), 0), (str(tmp_path / "v/b.mp4"), 1), (str(tmp_path / "v/my clip.mp4"), 1)]
    assert src.split("val")[0].label == 1


def test_jpeg_frame_folders(tmp_path):
    from conftest import write_jpeg

    for t in range(5):
        img = torch.full((3, 24, 32), 40 * t, dtype=torch.uint8)
        (tmp_path / "frames" / "clip1").mkdir(parents=True, exist_ok=True)
        write_jpeg(img, (tmp_path / "frames" / "clip1" / f"img_{t + 1:05d}.jpg"))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("frames/clip1 5 1\n")
    src = resolve(str(tmp_path))
    s = src.split("train")[0]
    assert s.frames == 5 and s.label == 1
    x = read_clip(s, 8, train=False)[0]  # [T, 3, H, W]
    assert x.shape == (8, 3, 24, 32) and x.dtype == torch.uint8
    # frames 0..4 repeated in order: brightness never decreases
    levels = x.float().mean(dim=(1, 2, 3))
    assert (levels[1:] >= levels[:-1] - 2).all() and levels[-1] > levels[0] + 100


def test_frame_folders_are_counted_on_disk_not_by_the_list(tmp_path):
    """The released code counts a frame folder's files at test time (datasets.py at 238c07f); a
    list file's count can be wrong (its UCF-101 list says 163 for a 164-frame video)."""
    from conftest import write_jpeg

    from tkvr.data.loader import read_indexed

    clip = tmp_path / "frames" / "clip1"
    clip.mkdir(parents=True)
    for t in range(5):
        write_jpeg(torch.full((3, 24, 32), 40 * t, dtype=torch.uint8), clip / f"img_{t + 1:05d}.jpg")
    (clip / ".DS_Store").write_bytes(b"\0" * 10)  # not a frame: not counted
    (clip / "notes.txt").write_text("x")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("frames/clip1 3 1\n")  # the list says 3
    s = resolve(str(tmp_path)).split("train")[0]
    x, idx = read_indexed(s, 4, False)
    assert idx == [[0, 1, 2, 3]]  # n = 5 (int(1.25 i)); with the list's 3 it would be [0, 0, 1, 2]
    levels = x[0].float().mean(dim=(1, 2, 3))
    assert torch.allclose(levels, torch.tensor([0.0, 40, 80, 120]), atol=3)


def test_yaml_with_frame_template(tmp_path):
    from conftest import write_jpeg

    for t in range(3):
        (tmp_path / "f" / "v").mkdir(parents=True, exist_ok=True)
        write_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8), (tmp_path / "f" / "v" / f"frame{t:03d}.jpg"))
    (tmp_path / "names.txt").write_text("x\ny\n")
    (tmp_path / "tr.txt").write_text("f/v 3 0\n")
    (tmp_path / "d.yaml").write_text("format: list\nlabels: names.txt\ntrain: tr.txt\n"
                                     "frame_template: 'frame{:03d}.jpg'\nflip: false\n")
    src = resolve(str(tmp_path / "d.yaml"))
    assert src.frame_template == "frame{:03d}.jpg" and src.flip is False
    with pytest.raises(UnreadableVideo, match="missing frame file frame003.jpg"):  # counts from 1 by default
        read_clip(src.split("train")[0], 4, False, reading=Reading(frame_template=src.frame_template))
    (tmp_path / "d.yaml").write_text("format: list\nlabels: names.txt\ntrain: tr.txt\n"
                                     "frame_template: 'frame{:03d}.jpg'\nframe_start: 0\n")
    src = resolve(str(tmp_path / "d.yaml"))
    x = read_clip(src.split("train")[0], 4, False, reading=Reading.of(src, "torchcodec"))
    assert x.shape == (1, 4, 3, 8, 8)
    (tmp_path / "bad.yaml").write_text("format: list\nlabel: names.txt\n")
    with pytest.raises(TkvrError, match="unknown key 'label'"):
        resolve(str(tmp_path / "bad.yaml"))


def test_class_folders_with_splits(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for c in ("cat", "dog"):
            for i in range(n):
                touch(tmp_path / split / c / f"{i}.jpg")
    src = resolve(str(tmp_path))
    assert src.classes == ["cat", "dog"]
    assert len(src.split("train")) == 4 and len(src.split("val")) == 2
    assert [s.label for s in src.split("val")] == [0, 1]


def test_kinetics_csv(tmp_path):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa,10,20,train\nair drumming,bbb,0,10,train\nabseiling,ccc,5,15,train\n")
    (root / "annotations" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nair drumming,ddd,30,40,val\n")
    touch(root / "train" / "abseiling" / "aaa_000010_000020.mp4")
    touch(root / "train" / "air drumming" / "bbb_000000_000010.mp4")
    touch(root / "val" / "ddd_000030_000040.mp4")  # flat layout works too
    src = resolve("k400", root=str(tmp_path))
    assert src.classes == ["abseiling", "air drumming"]
    assert [(s.path.split("/")[-1], s.label) for s in src.split("train")] == [
        ("aaa_000010_000020.mp4", 0), ("bbb_000000_000010.mp4", 1)]
    assert src.missing["train"] == ["ccc_000005_000015"]
    assert src.split("val")[0].label == 1


def test_ucf101_split_files(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                                           "Archery/v_Archery_g01_c01.avi 2\n")
    (lists / "testlist02.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    src = resolve(str(tmp_path), fold=2)
    assert src.classes == ["ApplyEyeMakeup", "Archery"]
    assert [s.label for s in src.split("train")] == [0, 1]
    assert src.split("val")[0].path == str(tmp_path / "Archery/v_Archery_g02_c01.avi")
    (lists / "testlist01.txt").write_text("Juggling/v_Juggling_g02_c01.avi\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n")
    with pytest.raises(TkvrError, match="testlist01.txt:1: class 'Juggling' is not in classInd.txt"):
        resolve(str(tmp_path), fold=1)


def test_hmdb51_split_files(tmp_path):
    s = tmp_path / "testTrainMulti_7030_splits"
    s.mkdir()
    (s / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (s / "cartwheel_test_split1.txt").write_text("d.avi 1\n")
    src = resolve(str(tmp_path))
    assert src.classes == ["brush_hair", "cartwheel"]
    assert [(s.path.split("/")[-2:], s.label) for s in src.split("train")] == [
        (["brush_hair", "a.avi"], 0), (["cartwheel", "d.avi"], 1)]
    assert len(src.split("val")) == 1


def test_imagenet_folders_and_real_images(tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for w in ("n01440764", "n01443537"):
            touch(root / split / w / "x.JPEG")
    src = resolve("imagenet", root=str(tmp_path))
    assert src.classes == ["n01440764", "n01443537"]  # not all 1000 wnids: folder names kept
    assert src.templates == ["a photo of a {}."]


def test_class_subset_from_a_file(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    (tmp_path / "train.txt").write_text("1.mp4 0\n2.mp4 1\n3.mp4 2\n4.mp4 2\n")
    (tmp_path / "keep.txt").write_text("c\na\n")
    src = resolve(f"{tmp_path}@{tmp_path / 'keep.txt'}")
    assert src.classes == ["c", "a"]
    assert [(s.path.split("/")[-1], s.label) for s in src.split("train")] == [("1.mp4", 1), ("3.mp4", 0), ("4.mp4", 0)]


def test_user_mistakes(tmp_path, monkeypatch):
    monkeypatch.delenv("TKVR_DATA_ROOT", raising=False)
    with pytest.raises(TkvrError, match="set --data-root or TKVR_DATA_ROOT"):
        resolve("ucf101")
    with pytest.raises(TkvrError, match="does not exist"):
        resolve("ucf101", root=str(tmp_path))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("x.mp4 0\ny.mp4 5\n")
    with pytest.raises(TkvrError, match=r"train.txt:2: label id 5 is outside the labels file"):
        resolve(str(tmp_path))
    (tmp_path / "train.txt").write_text("x.mp4 zebra\n")
    with pytest.raises(TkvrError, match=r"train.txt:1: class 'zebra' is not in the labels file"):
        resolve(str(tmp_path))
    (tmp_path / "train.txt").write_text("# nothing yet\n")
    with pytest.raises(TkvrError, match="the train split is empty"):
        resolve(str(tmp_path)).split("train")


def test_check_reports_bad_files(run_cli, tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    write_clip(tmp_path / "good.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "train.txt").write_text("good.mp4 0\nempty.mp4 1\ntext.mp4 1\ngone.mp4 0\n")
    code, out, err = run_cli("check", "--data", tmp_path, "--workers", 0, "--json", tmp_path / "r.json")
    assert code == 1, err
    import json

    r = json.loads((tmp_path / "r.json").read_text())
    assert r["num_samples"] == 4 and r["num_classes"] == 2 and r["classes"] == ["a", "b"]
    assert sorted(p.split("/")[-1] for p in r["unreadable"]) == ["empty.mp4", "gone.mp4", "text.mp4"]
    assert [p.split("/")[-1] for p in r["missing"]] == ["gone.mp4"]
    assert "3 of 4 samples do not read" in out
    (tmp_path / "train.txt").write_text("good.mp4 0\ngood.mp4 1\n")
    code, out, _ = run_cli("check", "--data", tmp_path, "--workers", 0)
    assert code == 0 and "all samples read" in out


def test_check_user_error(run_cli, tmp_path):
    code, _, err = run_cli("check", "--data", tmp_path / "nowhere")
    assert_user_error(code, err, "--data", "nowhere")


def test_imagenet_layout_with_in600_in400(tmp_path):
    """1000 wnid folders: open_clip's class names and 80 templates; IN600 / IN400 split them."""
    root = tmp_path / "imagenet"
    for i in range(1000):
        for split in ("train", "val"):
            touch(root / split / f"n{i:08d}" / "a.JPEG")
    full = resolve("imagenet", root=str(tmp_path))
    assert len(full.classes) == 1000 and full.classes[0] == "tench" and len(full.templates) == 80
    seen, unseen = resolve("IN600", root=str(tmp_path)), resolve("IN400", root=str(tmp_path))
    assert len(seen.classes) == 600 and len(unseen.classes) == 400
    from tkvr.data.specs import subset_ids

    assert not set(subset_ids(1000, 600, True)) & set(subset_ids(1000, 600, False))
    # open_clip's names hold 'missile' and 'sunglasses' twice: the subsets go by id, not name
    assert [full.classes[i] for i in subset_ids(1000, 600, False)] == unseen.classes
    assert not set(seen.class_ids()) & set(unseen.class_ids())  # ids, not names, tell them apart
    assert len(unseen.split("val")) == 400 and {s.label for s in unseen.split("val")} == set(range(400))


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
