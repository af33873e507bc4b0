"""--precision auto on a CPU: bf16 for scoring where the CPU computes bf16 natively, float32 for
training and elsewhere; what it picked is recorded. The capability is simulated at torch's own
checks, both ways, so the test means the same on any machine."""
import json

import pytest
import torch
import yaml
from conftest import tkvr

from tkvr.run import auto, launch
from tkvr.run.settings import DeviceConfig


@pytest.fixture(params=[None, "AVX512-BF16", "AMX"])
def cpu(request, monkeypatch):
    """A CPU without native bf16, with AVX512-BF16 (as the build machine), with AMX; no CUDA."""
    unit = request.param
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: unit is not None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: unit == "AMX")
    return unit


def test_auto_scores_in_bf16_only_where_the_cpu_computes_it(cpu):
    assert auto.native_bf16() == cpu
    scoring = "bf16-mixed" if cpu else "32-true"
    for accelerator in ("auto", "cpu"):
        device = DeviceConfig(accelerator=accelerator)
        assert auto.precision(device, inference=True)[0] == scoring
        assert auto.precision(device)[0] == "32-true"  # training keeps float32
        why = auto.precision(device, inference=True)[1]
        assert (f"natively ({cpu})" in why) if cpu else ("no native bf16" in why)
        assert auto.precision(device)[1] == "auto: training off CUDA keeps float32"
    for given in ("32-true", "bf16-mixed"):  # a value given is kept, for scoring and training
        device = DeviceConfig(precision=given)
        assert auto.precision(device, inference=True)[0] == auto.precision(device)[0] == given
        assert auto.precision(device, inference=True)[1] == "as given"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import fast, small_set

    tmp = tmp_path_factory.mktemp("precision")
    code, _, err = tkvr("train", "--data", small_set(tmp, bad=()), *fast(batch_size=2, epochs=1), "--out", tmp / "run")
    assert code == 0, err
    return tmp / "run"


def test_eval_runs_and_records_what_auto_picked(cpu, run, tmp_path, monkeypatch):
    import tkvr.run.evaluation as evaluation

    made = []
    monkeypatch.setattr(evaluation, "make_fabric", lambda *a, **k: made.append(launch.make_fabric(*a, **k)) or made[-1])
    code, _, err = tkvr("eval", "--checkpoint", run, "--workers", "0", "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    want = "bf16-mixed" if cpu else "32-true"
    assert report["precision"] == want
    assert report["precision_why"] == auto.precision(DeviceConfig(), inference=True)[1]
    assert made[0]._precision.precision == want  # the scores were computed at it
    code, out, err = tkvr("eval", "--checkpoint", run, "--dry-run")
    assert code == 0, err
    plan = yaml.safe_load(out)  # the plan: what this evaluation picks beside what the run trained at
    assert (plan["auto"]["precision"], plan["device"]["precision"]) == (want, "32-true")
    code, out, err = tkvr("train", "--data", "toy", "--backbone", "tiny", "--out", tmp_path / "t", "--dry-run")
    assert code == 0, err  # a run's plan: training keeps float32 on any CPU
    assert yaml.safe_load(out)["auto"]["precision"] == "32-true"


def test_predict_says_when_auto_picked_bf16(cpu, tmp_path):
    from conftest import write_clip

    write_clip(tmp_path / "a.mp4")
    code, out, err = tkvr("predict", tmp_path / "a.mp4", "--backbone", "tiny", "--labels", "a,b", "--workers", "0")
    assert code == 0, err
    said = [line for line in out.splitlines() if line.startswith("precision ")]
    assert said == ([f"precision bf16-mixed (auto: this CPU computes bf16 natively ({cpu}); "
                     "--precision 32-true for float32)"] if cpu else [])
