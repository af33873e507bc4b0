"""tkvr check (tkvr.run.check): every sample read as training reads it."""

import json

from conftest import (
    assert_wrote,
    list_dataset,
    write_divx_avi,
)


def test_check_reads_the_last_frame(run_cli, tmp_path):
    """check reads what training reads: a file whose end is damaged fails check."""
    data = list_dataset(tmp_path, {"a.avi": "x", "b.avi": "y"})
    write_divx_avi(data / "a.avi", frames=10)
    write_divx_avi(data / "b.avi", frames=10)
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    assert code == 0, out + err
    assert_wrote(out, tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["unreadable"] == []
    raw = (data / "b.avi").read_bytes()
    (data / "b.avi").write_bytes(raw[: len(raw) * 2 // 3])  # the last third is gone
    code, out, err = run_cli("check", "--data", data, "--workers", "0", "--json", tmp_path / "c.json")
    report = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and report["unreadable"] == [str(data / "b.avi")], out


# ---- tkvr check FILES: what the model sees
def test_save_views_hold_the_pixels_eval_scores(run_cli, tiny_run, tmp_path, monkeypatch):
    """The PNGs of `check --save-views` are, once normalised, the batch `tkvr eval` scores."""
    import numpy as np
    import torch
    from conftest import write_clip
    from PIL import Image

    import tkvr.run.evaluation as evaluation
    from tkvr.data.toy import write_video

    (tmp_path / "d").mkdir()
    data = list_dataset(tmp_path / "d", {"wide.mp4": "a", "b.mp4": "b"})
    x = torch.randint(0, 255, (30, 3, 36, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_video(x, data / "wide.mp4", fps=8)  # 16:9, 30 frames
    write_clip(data / "b.mp4", frames=8)
    seen = []
    real = evaluation.evaluate

    def spy(fabric, model, dl, *a, **k):
        seen.extend(b["video"] for b in dl)  # [B, V, T, 3, H, W]
        return real(fabric, model, dl, *a, **k)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    ev = ("eval", "--checkpoint", tiny_run, "--data", data, "--labels", "data", "--views", "2x3")
    code, out, err = run_cli(*ev, "--workers", "0", "--batch-size", "1", "--split", "val")
    assert code == 0, out + err
    batch = seen[0][0]  # wide.mp4: [6, T, 3, 32, 32]
    views = tmp_path / "views"
    code, out, err = run_cli(
        "check", data / "wide.mp4", "--checkpoint", tiny_run, "--views", "2x3", "--save-views", views
    )
    assert code == 0, out + err
    assert_wrote(out, views)
    v_n, t_n = batch.shape[:2]
    assert (v_n, len(list((views / "wide").iterdir()))) == (6, 6 * t_n)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    for v in range(v_n):
        for t in range(t_n):
            png = np.asarray(Image.open(views / "wide" / f"view{v:02d}_frame{t:02d}.png"))
            px = torch.from_numpy(png.copy()).permute(2, 0, 1)  # [3, H, W] uint8
            torch.testing.assert_close((px.float() / 255 - mean) / std, batch[v, t], rtol=0, atol=1e-5)
    sheet = Image.open(views / "wide.png")
    assert sheet.size == (5 * 10 + t_n * 32, 6 * (32 + 10 + 6))  # labels at least 10 px


def test_check_files_shows_the_released_frames_of_a_real_clip(run_cli, tmp_path):
    import json

    from conftest import realdata

    clip = realdata("videos") / "ucf101_ApplyEyeMakeup_mmaction2_test.avi"  # 320x240, 164 frames
    code, out, err = run_cli(
        "check",
        clip,
        "--views",
        "4x3",
        "--frames",
        "8",
        "--save-views",
        tmp_path / "v",
        "--json",
        tmp_path / "c.json",
    )
    assert code == 0, out + err
    r = json.loads((tmp_path / "c.json").read_text())
    tick = 164 / 8  # the released _get_test_indices: starts linspace(0, tick - 1, 4) -> 0, 6, 13, 19
    assert r["files"][0]["frames_read"] == [[int(s + tick * x) for x in range(8)] for s in (0, 6, 13, 19)]
    assert (r["short_side"], r["size"]) == (256, 224)
    names = sorted(p.name for p in (tmp_path / "v" / clip.stem).iterdir())
    assert len(names) == 96 and names[0] == "view00_frame00.png" and names[-1] == "view11_frame07.png"
    assert (tmp_path / "v" / f"{clip.stem}.png").is_file()


def test_check_files_user_errors(run_cli, tmp_path):
    from conftest import assert_user_error, write_clip

    a = write_clip(tmp_path / "a" / "clip.mp4")
    b = write_clip(tmp_path / "b" / "clip.mp4")
    code, _, err = run_cli("check", a, "--data", "toy")
    assert_user_error(code, err, "--data", "not both")
    code, _, err = run_cli("check", tmp_path / "nope.mp4")
    assert_user_error(code, err, "nope.mp4", "no such file")
    code, _, err = run_cli("check", "--data", "toy", "--save-views", tmp_path / "v")
    assert_user_error(code, err, "--save-views", "FILES")
    code, _, err = run_cli("check", a, b, "--save-views", tmp_path / "v")
    assert_user_error(code, err, "--save-views", "'clip'")
    code, _, err = run_cli("check")
    assert_user_error(code, err, "--data")
    assert not (tmp_path / "v").exists()


def test_check_files_names_an_unreadable_one(run_cli, tmp_path):
    from conftest import write_clip

    good = write_clip(tmp_path / "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 4)
    code, out, err = run_cli("check", good, bad, "--save-views", tmp_path / "v")
    assert code == 1 and f"unreadable: {bad}" in out, out + err
    assert (tmp_path / "v" / "good.png").is_file() and not (tmp_path / "v" / "bad").exists()
