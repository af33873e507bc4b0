"""Decoding real clips in several codecs and containers, through both decoders."""
import random

import pytest
import torch
from conftest import realdata

from tkvr.data.sampling import segment_indices
from tkvr.data.video import UnreadableVideo, VideoFile, pick_decoder, torchcodec_error


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
    import tkvr.data.video as video

    video._announced = False
    first = pick_decoder("auto")
    pick_decoder("auto")
    out = capsys.readouterr().out
    assert out.count("decoder:") == 1 and first in out
