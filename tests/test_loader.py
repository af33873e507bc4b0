"""Clip datasets: bad files during training, the bad-file budget, worker seeding."""
import json

import pytest
import torch
from conftest import (
    PRE,
    TINY_RUN,
    assert_user_error,
    realdata,
    small_set,
    tkvr_process,
    write_clip,
)

from tkvr.base.errors import TkvrError
from tkvr.data.loader import BadFiles, ClipDataset, Scoring, Training, loader, start_epoch
from tkvr.data.specs import Sample
from tkvr.data.transforms import EvalTransform, train_transform
from tkvr.data.video import Reading


def make_loader(ds, batch_size, shuffle, workers, seed=0, epoch=0):
    dl = loader(ds, batch_size, shuffle, workers, seed, 0, 1)
    start_epoch(dl, epoch, seed, 0)
    return dl


@pytest.fixture
def corrupt_set(tmp_path):
    good = [write_clip(tmp_path / f"g{i}.mp4", seed=i) for i in range(4)]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good[0].read_bytes()[:300])
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    samples = [Sample(str(good[0]), 0), Sample(str(good[1]), 0), Sample(str(empty), 0),
               Sample(str(good[2]), 1), Sample(str(trunc), 1), Sample(str(text), 1), Sample(str(good[3]), 1)]
    return samples, {2, 4, 5}


def test_unreadable_training_videos_are_replaced_and_counted(corrupt_set):
    samples, bad_ids = corrupt_set
    ds = ClipDataset(samples, 4, train_transform(PRE), Reading("pyav"), Training())
    seen_bad, budget = set(), BadFiles(samples, max_fraction=0.5)
    for epoch in range(2):
        for batch in make_loader(ds, batch_size=7, shuffle=True, workers=0, epoch=epoch):
            assert batch["video"].shape == (7, 4, 3, 32, 32)
            for used, label in zip(batch["index"].tolist(), batch["label"].tolist()):
                assert used not in bad_ids and samples[used].label == label  # same class
            seen_bad |= {b for b in batch["bad"].flatten().tolist() if b >= 0}
            budget.update(batch["bad"])
    assert seen_bad == bad_ids
    assert sorted(budget.paths()) == sorted(samples[i].path for i in bad_ids)


def test_bad_fraction_budget_stops_the_run(corrupt_set):
    samples, _ = corrupt_set
    ds = ClipDataset(samples, 4, train_transform(PRE), Reading("pyav"), Training())
    budget = BadFiles(samples, max_fraction=0.2)
    with pytest.raises(TkvrError, match=r"3 of 7 training videos are unreadable \(42.9% > --max-bad-fraction 0.2"):
        for batch in make_loader(ds, batch_size=7, shuffle=False, workers=0):
            budget.update(batch["bad"])


def test_eval_marks_unreadable_and_keeps_going(corrupt_set):
    samples, bad_ids = corrupt_set
    ds = ClipDataset(samples, 4, EvalTransform(PRE, 3), Reading("pyav"), Scoring(2))
    batch = next(iter(make_loader(ds, batch_size=7, shuffle=False, workers=0)))
    assert batch["video"].shape == (7, 6, 4, 3, 32, 32)  # [B, C*S, T, 3, H, W]
    assert {b for b in batch["bad"].tolist() if b >= 0} == bad_ids


def test_workers_draw_different_augmentations_each_epoch(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", frames=40)
    ds = ClipDataset([Sample(str(clip), 0)] * 4, 4, train_transform(PRE), Reading("pyav"), Training())
    epochs = [torch.cat([b["video"] for b in make_loader(ds, 1, False, workers=2, epoch=e)]) for e in (0, 1)]
    assert not torch.equal(epochs[0][0], epochs[0][1])  # items on different workers differ
    assert not torch.equal(epochs[0], epochs[1])  # and epochs differ
    again = torch.cat([b["video"] for b in make_loader(ds, 1, False, workers=2, epoch=0)])
    assert torch.equal(again, epochs[0])  # while the same seed and epoch repeat exactly


def test_real_images_as_one_frame_clips():
    img = realdata("images") / "skimage_chelsea.png"
    ds = ClipDataset([Sample(str(img), 0)], 1, EvalTransform(PRE, 1))
    item = ds[0]
    assert item["video"].shape == (1, 1, 3, 32, 32) and item["bad"] == -1


def test_eval_with_a_batch_of_unreadable_videos_only(run_cli, tmp_path):
    data = small_set(tmp_path)
    run = tmp_path / "run"
    code, out, err = run_cli("train", "--data", data, *TINY_RUN, "--batch-size", "1", "--limit-batches", "1",
                             "--max-bad-fraction", "1.0", "--out", run)
    assert code == 0, err  # the sanity validation's first batch is the unreadable video alone
    code, out, err = run_cli("eval", "--checkpoint", run, "--batch-size", "1", "--workers", "0",
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["unreadable"] == [str(data / "bad.mp4")] and report["num_samples"] == 3


def test_bad_videos_are_never_replacements(run_cli, tmp_path):
    """Six unreadable videos and one good one in a class: every draw ends on the good one."""
    data = small_set(tmp_path, bad=tuple(f"bad{i}.mp4" for i in range(6)))
    code, out, err = run_cli("train", "--data", data, *TINY_RUN, "--batch-size", "3", "--max-bad-fraction", "1.0",
                             "--out", tmp_path / "run")
    assert code == 0, err
    unreadable = (tmp_path / "run" / "unreadable.txt").read_text().split()
    assert sorted(unreadable) == sorted(str(data / f"bad{i}.mp4") for i in range(6))


def test_error_inside_a_worker_is_one_line(run_cli, tmp_path):
    data = small_set(tmp_path)
    (data / "a.mp4").write_bytes(b"\x00" * 100)  # now every video of class x is unreadable
    code, _, err = run_cli("train", "--data", data, *TINY_RUN, "--workers", "1", "--max-bad-fraction", "1.0",
                           "--out", tmp_path / "run")
    assert_user_error(code, err, "every training video of class 'x' is unreadable")


@pytest.mark.slow
def test_bad_file_budget_and_list_are_global_under_ddp(tmp_path):
    data = small_set(tmp_path, bad=tuple(f"bad{i}.mp4" for i in range(5)))  # 5 of 8 training videos
    ddp = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    # 62% unreadable > 50%: refused by two processes (one process: test_nothing_lost's budget test)
    code, _, err = tkvr_process("train", "--data", data, *TINY_RUN, "--batch-size", "2", "--max-bad-fraction", "0.5",
                                *ddp, "--out", tmp_path / "refused")
    assert code == 1 and "5 of 8 training videos are unreadable" in err and "Traceback" not in err, err
    assert err.count("5 of 8 training videos are unreadable") == 1, err  # said once, not by each rank
    assert "all listed in" in err and "--data ..." not in err, err  # a runtime fault, said plainly
    run = tmp_path / "run"
    code, _, err = tkvr_process("train", "--data", data, *TINY_RUN, "--batch-size", "2", "--max-bad-fraction", "1.0",
                                *ddp, "--out", run)
    assert code == 0, err[-3000:]
    assert sorted((run / "unreadable.txt").read_text().split()) == sorted(str(data / f"bad{i}.mp4") for i in range(5))
    # eval with 2 processes and batches of one: whole shards of unreadable videos
    code, _, err = tkvr_process("eval", "--checkpoint", run, "--batch-size", "1", "--workers", "0", *ddp,
                                "--json", tmp_path / "e.json")
    assert code == 0, err[-3000:]
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["num_samples"] == 3 and len(report["unreadable"]) == 5


def test_replacement_warning_names_the_class_and_file_once(tmp_path, caplog):
    from tkvr.data.loader import BadFiles, ClipDataset, Training, collate
    from tkvr.data.specs import Sample

    good = write_clip(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    samples = [Sample(str(tmp_path / "bad.mp4"), 0), Sample(str(good), 0)]
    ds = ClipDataset(samples, 4, lambda x: x, mode=Training(classes=["juggling"]))
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
