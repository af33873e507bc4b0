import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REALDATA = Path(os.environ.get("TKVR_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


def realdata(sub: str = "") -> Path:
    path = REALDATA / sub
    if not path.exists():
        pytest.skip(f"real test material not found at ../shared/realdata/{sub} (only in the project's workspace)")
    return path


@pytest.fixture(scope="session")
def tiny():
    from tkvr.model import build_backbone

    return build_backbone("tiny")


@pytest.fixture
def run_cli(capsys):
    """Run the real entry point in-process: returns (exit code, stdout, stderr)."""
    from tkvr.cli import main

    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_user_error(code, err, *words):
    """Exit 2, one line on stderr, no traceback, and the line names what went wrong."""
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
