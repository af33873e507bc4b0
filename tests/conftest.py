import contextlib
import io
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one test process per core: each of them (and the processes
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # it starts) computes on one thread, not on every core

import pytest  # noqa: E402

REALDATA = Path(os.environ.get("TKVR_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


def realdata(sub: str = "") -> Path:
    path = REALDATA / sub
    if not path.exists():
        pytest.skip(f"real test material not found at {path}: set TKVR_REALDATA to the folder that holds it")
    return path


@pytest.fixture(scope="session")
def tiny():
    from tkvr.model.backbones import build_backbone

    return build_backbone("tiny")


def tkvr(*args) -> tuple[int, str, str]:
    """The command line's real entry point, run in this process: (exit code, stdout, stderr). The
    one way tests call it in-process (fixtures of any scope too); `tkvr_process` starts a process
    of its own, for what needs one (DDP, kills, a clean interpreter)."""
    from tkvr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli():
    return tkvr


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny run on the toy world for the tests that only read a run (they change copies)."""
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    code, stdout, err = tkvr("train", *fast(data="toy", epochs=1, limit_batches=2, log_every=1), "--out", out)
    assert code == 0, err
    assert_wrote(stdout, out)
    return out


@pytest.fixture
def weights_cached(monkeypatch):
    """As on a machine whose Hugging Face cache holds every open_clip weight file: --dry-run finds
    the released backbones' weights (it checks them; this machine has none and no network)."""
    import tkvr.model.backbones

    monkeypatch.setattr(tkvr.model.backbones, "cached", lambda *a, **k: True)


def assert_wrote(stdout: str, *paths) -> None:
    """The command ended by naming each file it wrote, one "wrote PATH[: what]" line each, in this
    order, and nothing else; each is there."""
    lines = stdout.strip().splitlines()
    said = [ln for ln in lines if ln.startswith("wrote ")]
    assert said and lines[-len(said):] == said, stdout  # the last lines
    assert len(said) == len(paths), (said, paths)
    for line, p in zip(said, paths):
        assert line == f"wrote {p}" or line.startswith(f"wrote {p}: "), (line, p)
        assert Path(p).exists(), p


def assert_user_error(code, err, *words):
    """Exit 2, one line on stderr, no traceback, and the line names what went wrong."""
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


# The toy world is written once per machine, not once per test run: it is the same world the demo
# uses, in the same cache (TKVR_CACHE, else ~/.cache/tkvr), keyed by its version, so a changed world
# gets a folder of its own. Test processes that need it at once wait for one writer (a file lock).
# The few tests that check the writing itself point TKVR_CACHE at a folder of their own.
os.environ.setdefault("TKVR_CACHE", str(Path.home() / ".cache" / "tkvr"))


def write_clip(path, frames=12, size=32, seed=0):
    """A small real H.264 file with distinct frames (a bar that moves)."""
    import torch

    from tkvr.data.toy import write_video

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(frames, 3, size, size, dtype=torch.uint8)
    for t in range(frames):
        x[t, :, :, (t * size) // frames] = 255
        x[t, 0] = 20 * t % 255
    write_video(x, path, fps=8)
    return path


def write_jpeg(img, path):
    """uint8 [3, H, W] -> a JPEG file (Pillow)."""
    from PIL import Image

    Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).save(str(path), quality=95)
    return path


def write_divx_avi(path, frames=10, placeholder=True, title=None):
    """An MPEG-4 Part 2 AVI that says it comes from DivX, as real HMDB-51 clips do. placeholder:
    one more 1-byte packet after the last frame, which the decoder turns into no frame (DivX's
    packed B-frame placeholders): the container holds frames + 1 packets. title: metadata, with
    its 'é' rewritten to a Latin-1 byte (not UTF-8), as in some HMDB-51 files."""
    import fractions

    import av
    import numpy as np

    enc = av.CodecContext.create("mpeg4", "w")
    enc.width, enc.height, enc.pix_fmt = 32, 32, "yuv420p"
    enc.time_base, enc.framerate = fractions.Fraction(1, 8), 8
    packets = []
    for t in range(frames):
        img = np.zeros((32, 32, 3), np.uint8)
        img[:, :, 0] = 20 * t
        img[:, t * 3 % 32, :] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = t, enc.time_base
        packets += [bytes(p) for p in enc.encode(f)]
    packets += [bytes(p) for p in enc.encode(None)]
    vop = packets[0].index(b"\x00\x00\x01\xb6")  # user data before the first picture: DivX 5.0.3
    packets[0] = packets[0][:vop] + b"\x00\x00\x01\xb2DivX503b1393" + packets[0][vop:]
    if placeholder:
        packets.append(b"\x7f")
    out = av.open(str(path), "w", format="avi")
    if title:
        out.metadata["title"] = title
    stream = out.add_stream("mpeg4", rate=8)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    for k, data in enumerate(packets):
        p = av.Packet(data)
        p.stream, p.pts, p.dts, p.time_base = stream, k, k, fractions.Fraction(1, 8)
        p.is_keyframe = k == 0
        out.mux(p)
    out.close()
    if title and "é" in title:
        data = open(path, "rb").read()
        at = data.index("é".encode())
        open(path, "wb").write(data[:at] + b"\xe9 " + data[at + 2:])  # same length, not UTF-8
    return path


# What the libraries print on their own (Fabric's banners and precision line, deprecations): tkvr's
# output at default verbosity holds none of it.
LIBRARY_NOISE = ("Initializing distributed", "distributed_backend", "All distributed processes", "Using bfloat16",
                 "deprecated", "Warning", "INFO", "lightning")


def fast(**changes) -> list[str]:
    """The one set of fast training flags (the built-in tiny backbone, 2 frames, no reader
    processes, no warm-up, each epoch's validation on its first 2 batches), with a test's own
    changes: fast(data="toy", limit_batches=2); None leaves a flag out (limit_val_batches=None:
    the whole validation split, for a test that reads its numbers)."""
    flags = {"backbone": "tiny", "frames": 2, "batch_size": 16, "workers": 0, "warmup": 0, "limit_val_batches": 2,
             **changes}
    return [x for k, v in flags.items() if v is not None for x in ("--" + k.replace("_", "-"), str(v))]


TINY_RUN = fast(batch_size=4, epochs=1)


def list_dataset(root, files: dict):
    """A list-file dataset: files = {name: class}, used as both train and val."""
    classes = sorted(set(files.values()))
    (root / "labels.txt").write_text("".join(c + "\n" for c in classes))
    lines = "".join(f"{name} {classes.index(c)}\n" for name, c in files.items())
    (root / "train.txt").write_text(lines)
    (root / "val.txt").write_text(lines)
    return root


def small_set(tmp_path, bad=("bad.mp4",)):
    files = {name: "x" for name in bad}
    files.update({"a.mp4": "x", "b.mp4": "y", "c.mp4": "y"})
    (tmp_path / "data").mkdir()
    data = list_dataset(tmp_path / "data", files)
    for i, name in enumerate(("a.mp4", "b.mp4", "c.mp4")):
        write_clip(data / name, frames=8, size=32, seed=i)
    for name in bad:
        (data / name).write_bytes(bytes(range(256)) * 8)  # not a video
    return data


def _kill_points():
    """The kill benchmark's helpers (benchmarks/kill_points.py): one reading of /proc for both."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import kill_points
    finally:
        sys.path.pop(0)
    return kill_points


def descendants(pid: int) -> list[int]:
    """The live processes below `pid`, at any depth (a reader is a child of the fork server)."""
    return _kill_points().descendants(pid)


def alive(pid: int) -> bool:
    return _kill_points().alive(pid)


def tkvr_process(*args):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tkvr", *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ))
    return r.returncode, r.stdout, r.stderr


def write_audio_only(path):
    """An MP4 (or .m4a) holding an AAC audio stream and no video stream."""
    import av
    import torch

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(torch.zeros(1, 1024).numpy(), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(4):
            frame.pts = i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def write_faststart_mp4(path, frames=48):
    """An H.264 MP4 with its index (moov) before the frames, as web downloads have."""
    import av
    import numpy as np

    out = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
    s = out.add_stream("libx264", rate=8)
    s.width = s.height = 64
    s.pix_fmt, s.options = "yuv420p", {"g": "8"}
    for t in range(frames):
        img = (np.random.RandomState(t).rand(64, 64, 3) * 255).astype(np.uint8)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


# A model's preprocessing (size, mean, std) for transform tests, small enough to be quick.
PRE = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def toy_frames(label: int, k: int = 0):
    """uint8 [16, 3, 64, 64]: the toy world's k-th val clip of class `label`."""
    from tkvr.data.specs import resolve
    from tkvr.data.video import open_reader

    src = resolve("toy")
    path = next(s.path for s in src.split("val") if s.label == label and s.path.endswith(f"_{k:02d}.mp4"))
    r = open_reader(path, "pyav")
    try:
        return r.read(list(range(len(r))))
    finally:
        r.close()


def write_timed(frames, times, path):
    """An H.264 MP4 whose frame i is shown from times[i] seconds (millisecond timestamps): frame
    rates that change along the file, as phones and screen recorders write."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height = frames.shape[-1], frames.shape[-2]
        s.pix_fmt, s.options = "yuv420p", {"crf": "12"}
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for f, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(f.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            vf.pts, vf.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


# Test files by their time in a serial run on the 2-core build machine, the longest first (20 s and
# more; the rest follow in name order): with test processes taking a file each (xdist), a long
# file started last would keep one core busy alone at the end.
LONG_FIRST = ["test_engine.py", "test_launch.py", "test_toy_claims.py", "test_protocols.py", "test_nothing_lost.py",
              "test_paper_settings.py", "test_loader.py", "test_demo.py", "test_checkpoint.py", "test_objectives.py",
              "test_convert.py", "test_trust.py", "test_export.py", "test_predict.py", "test_prepare.py",
              "test_model.py", "test_plots.py", "test_evaluation.py"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the others, the order stays


def pytest_xdist_auto_num_workers(config):
    """-n auto: a test process per core and one more. A process that waits (for a process it
    started, a file lock, a kill) leaves its core idle; the extra one fills it (7.7 min against
    9.1 on the 2-core build machine)."""
    return (os.cpu_count() or 1) + 1
