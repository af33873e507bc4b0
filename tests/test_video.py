"""Decoding real clips in several codecs and containers, through both decoders."""
import json
import random

import pytest
import torch
from conftest import TINY_RUN, list_dataset, realdata, write_clip, write_divx_avi, write_faststart_mp4

from tkvr.data.sampling import segment_indices
from tkvr.data.video import Reading, UnreadableVideo, VideoFile, torchcodec_error


def clips():
    return sorted(realdata("videos").iterdir())


needs_torchcodec = pytest.mark.skipif(torchcodec_error() is not None,
                                      reason=f"torchcodec cannot load FFmpeg here: {torchcodec_error()}")


@needs_torchcodec
def test_every_real_clip_decodes_and_both_decoders_agree():
    for path in clips():
        tc, av = VideoFile(str(path), "torchcodec"), VideoFile(str(path), "pyav")
        assert len(tc) == len(av) > 0, path.name
        n = len(tc)
        for idx in (segment_indices(n, 8, train=False), segment_indices(n, 8, False, 3, 4),
                    [n - 1, n - 2, 0, n // 2, n // 2]):
            a, b = tc.read(idx), av.read(idx)
            assert a.dtype == torch.uint8 and a.shape == (len(idx), 3, a.shape[2], a.shape[3]), path.name
            assert a.shape == b.shape, path.name
            diff = (a.float() - b.float()).abs().mean(dim=(1, 2, 3))  # per frame, 0..255
            assert diff.max() < 5, (path.name, idx, diff.tolist())


@pytest.mark.parametrize("decoder", ["torchcodec", "pyav"])
def test_sampling_near_the_end_never_asks_for_a_missing_frame(decoder):
    if decoder == "torchcodec" and torchcodec_error():
        pytest.skip(torchcodec_error())
    rng = random.Random(0)
    for path in clips():
        video = VideoFile(str(path), decoder)
        n = len(video)
        for t in (8, 32, n + 5):  # n + 5: a clip shorter than T repeats frames
            for idx in [segment_indices(n, t, True, rng=rng) for _ in range(3)] + \
                       [segment_indices(n, t, False, c, 4) for c in range(4)]:
                assert max(idx) <= n - 1 and min(idx) >= 0
            last = segment_indices(n, t, False, 3, 4)  # the clip closest to the end
            x = video.read(last)
            assert x.shape[0] == t, (path.name, t)
        video.close()


def test_pyav_seeking_and_frame_skipping_return_exactly_the_frames_of_a_full_decode():
    """The PyAV reader seeks and skips unwanted non-reference frames; neither may change a pixel."""
    import av

    rng = random.Random(0)
    for path in clips():
        if path.suffix == ".avi":
            continue
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            frames = sorted(c.decode(s), key=lambda f: f.pts)  # display order
            full = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in frames]
        video = VideoFile(str(path), "pyav")
        n = len(video)
        assert n == len(full), path.name
        for idx in (segment_indices(n, 8, train=False), segment_indices(n, 8, True, rng=rng),
                    [n - 1, 0, n // 2, n // 2, 1], sorted(rng.sample(range(n), min(n, 12)))):
            x = video.read(idx)
            for k, i in enumerate(idx):
                assert torch.equal(x[k], full[i]), (path.name, i)
        video.close()


def test_avi_is_read_in_display_order_by_pyav_under_either_decoder():
    path = str(realdata("videos") / "ntu60_S001C001P001R001A001_rgb.avi")
    a, b = VideoFile(path, "torchcodec"), VideoFile(path, "pyav")
    assert a.decoder == b.decoder == "pyav"
    idx = segment_indices(len(a), 8, train=False)
    x = a.read(idx)
    assert torch.equal(x, b.read(idx))
    # display order: frame k of a read from the start is the k-th frame PyAV's decoder puts out
    import av

    with av.open(path) as c:
        frames = [f for _, f in zip(range(max(idx) + 1), c.decode(video=0))]
    for k, i in enumerate(idx):
        want = torch.from_numpy(frames[i].to_ndarray(format="rgb24")).permute(2, 0, 1)
        assert torch.equal(x[k], want), i


def test_corrupt_files_are_unreadable(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    for decoder in ("pyav",) + (("torchcodec",) if torchcodec_error() is None else ()):
        for bad in (empty, text):
            with pytest.raises(UnreadableVideo):
                VideoFile(str(bad), decoder).read([0])


def test_truncated_real_clip_is_unreadable_or_short(tmp_path):
    src = realdata("videos") / "k400_arm_wrestling_mmaction2_demo.mp4"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: 4000])
    with pytest.raises(UnreadableVideo):
        v = VideoFile(str(cut), "pyav")
        v.read([len(v) - 1])


def test_auto_decoder_announces_once(capsys):
    from tkvr.run import auto

    auto._announced = False
    first = auto.decoder("auto")
    auto.decoder("auto")
    out = capsys.readouterr().out
    assert out.count("decoder:") == 1 and first in out


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
        read_clip(Sample(str(path), 0), 8, train=True, reading=Reading(decoder))
    clip = read_clip(Sample(str(path), 0), 8, train=False, clips=4, reading=Reading(decoder))  # 4x eval views
    assert clip.shape == (4, 8, 3, 32, 32)


def test_latin1_metadata_opens(tmp_path):
    from tkvr.data.video import VideoFile

    path = write_divx_avi(tmp_path / "clip.avi", frames=6, placeholder=False, title="café")
    assert b"caf\xe9 " in path.read_bytes()
    for decoder in ("pyav", "torchcodec"):
        v = VideoFile(path, decoder)
        assert len(v) == 6 and v.read([5]).shape == (1, 3, 32, 32)
        v.close()


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


def test_out_of_memory_is_not_an_unreadable_video(run_cli, tmp_path, monkeypatch):
    from tkvr.data import video

    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", "toy", *TINY_RUN, "--limit-batches", "1", "--out", run)
    assert code == 0, err

    def oom(self, indices):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(video.TorchcodecVideo, "_read", oom)
    monkeypatch.setattr(video.PyAVVideo, "_read", oom)
    code, _, err = run_cli("eval", "--checkpoint", run, "--views", "32x1", "--workers", "0")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "out of memory" in lines[0] and "--views" in lines[0], err


def test_decoder_messages_are_short_and_counts_read_well():
    from tkvr.base.progress import count
    from tkvr.data.video import _short

    msg = _short(RuntimeError("/__w/torchcodec/src/torchcodec/_core/SingleStreamDecoder.cpp:123: Could not open "
                              "input file: clip.mp4"))
    assert msg == "RuntimeError: Could not open input file: clip.mp4"
    assert [count(1, "class"), count(2, "class"), count(1, "video"), count(3, "video")] == [
        "1 class", "2 classes", "1 video", "3 videos"]
