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
