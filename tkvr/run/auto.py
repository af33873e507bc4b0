"""Every "auto" of tkvr, decided here and only here: --precision, --augment, --randaugment, --decoder,
--workers, zeroshot's --eval-set and --resume auto's checkpoint. The facts the decisions rest on
(is there CUDA, does this CPU compute bf16, do FFmpeg's libraries load, how many cores) are asked
here too. The layers below receive decided values by name and never meet "auto"; a run records
what each became, in config.yaml: the settings that change its numbers (precision, augment,
randaugment) in their groups, where a resumed run keeps them; the machine's own (decoder, workers,
why that precision) in its `auto:` section, which a run on another machine decides afresh.

Importing this module loads no torch (the command line's dispatcher reads it for --resume auto).
"""

from __future__ import annotations

import os
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.progress import say
from tkvr.data.settings import DECODERS


# ---------------------------------------------------------------- the machine's facts
def cuda_here() -> tuple[bool, bool, bool]:
    """(CUDA is here, its device computes bf16, Apple's MPS is here)."""
    import torch  # deferred: the dispatcher imports this module before torch is needed

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return cuda, cuda and torch.cuda.is_bf16_supported(), mps


def native_bf16() -> str | None:
    """The unit with which this CPU computes bf16, as torch's own checks see it (its oneDNN
    kernels use them): "AMX", "AVX512-BF16", or None (elsewhere bf16 is emulated: slower than
    float32, so auto keeps float32)."""
    import torch  # deferred: the dispatcher imports this module before torch is needed

    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- --precision
def where(accelerator: str, cuda: bool, mps: bool) -> str:
    """Where --accelerator puts a model: "cuda", "cpu" or "other" (mps and the like)."""
    if cuda and accelerator in ("auto", "cuda", "gpu"):
        return "cuda"
    if accelerator == "cpu" or (accelerator == "auto" and not cuda and not mps):
        return "cpu"
    return "other"


def place(accelerator: str) -> str:
    """where() on this machine."""
    cuda, _, mps = cuda_here()
    return where(accelerator, cuda, mps)


def resolve_precision(
    setting: str,
    accelerator: str,
    cuda: bool,
    bf16: bool,
    mps: bool = False,
    cpu_bf16: bool = False,
    inference: bool = False,
) -> str:
    """--precision auto: bf16-mixed on a CUDA device that supports bf16 (as the paper trained),
    16-mixed on older CUDA devices; on a CPU, bf16-mixed for inference where the CPU computes bf16
    natively (`cpu_bf16`), else 32-true (training on a CPU keeps float32 unless asked); 32-true
    elsewhere. Any other value as given.

    >>> [resolve_precision("auto", a, c, b) for a, c, b in
    ...  (("auto", True, True), ("cuda", True, False), ("auto", False, False), ("cpu", True, True))]
    ['bf16-mixed', '16-mixed', '32-true', '32-true']
    >>> [resolve_precision("auto", "cpu", False, False, cpu_bf16=n, inference=i) for n, i in
    ...  ((True, True), (True, False), (False, True))]
    ['bf16-mixed', '32-true', '32-true']
    >>> resolve_precision("16-mixed", "cpu", True, True)
    'bf16-mixed'
    """
    here = where(accelerator, cuda, mps)
    if setting == "16-mixed" and here == "cpu":
        return "bf16-mixed"  # CPUs have no float16 autocast; Lightning would switch it with a warning
    if setting != "auto":
        return setting
    if here == "cuda":
        return "bf16-mixed" if bf16 else "16-mixed"
    if here == "cpu" and inference and cpu_bf16:
        return "bf16-mixed"
    return "32-true"


def precision(device, inference: bool = False) -> tuple[str, str]:
    """(what `device.precision` (a DeviceConfig's) becomes on this machine, why in words: what a
    plan and a report show); `inference`: for scoring only (eval, predict, zeroshot --no-train),
    where auto may pick bf16 on a CPU."""
    cuda, bf16, mps = cuda_here()
    unit = native_bf16()
    here = resolve_precision(
        device.precision, device.accelerator, cuda, bf16, mps, unit is not None, inference
    )
    place = where(device.accelerator, cuda, mps)
    if device.precision != "auto":
        why = "as given" if here == device.precision else "16-mixed asked: a CPU has no float16 autocast"
    elif place == "cuda":
        why = f"auto: a CUDA device {'with' if bf16 else 'without'} bf16"
    elif place != "cpu":
        why = "auto: float32 on this device"
    elif not inference:
        why = "auto: training off CUDA keeps float32"
    elif unit:
        why = f"auto: this CPU computes bf16 natively ({unit}); --precision 32-true for float32"
    else:
        why = "auto: this CPU has no native bf16 (AVX512-BF16 or AMX)"
    return here, why


def precision_said(device, inference: bool = False, tell_bf16: bool = False) -> str:
    """precision(), saying so where 16-mixed was asked on a CPU and bf16-mixed runs instead, and
    (`tell_bf16`: predict, whose scores were float32 before) where auto picked bf16 on a CPU."""
    here, why = precision(device, inference)
    if device.precision == "16-mixed" and here != device.precision:
        say(
            "--precision 16-mixed: a CPU has no float16 autocast; running bf16-mixed instead "
            "(recorded in the run)"
        )
    picked = device.precision == "auto" and here == "bf16-mixed"
    if tell_bf16 and picked and place(device.accelerator) == "cpu":
        say(f"precision {here} ({why})")
    return here


# ---------------------------------------------------------------- the data's autos
def augment(setting: str, accelerator: str) -> str:
    """--augment auto: on the device when training runs on CUDA, else in the reader processes."""
    if setting != "auto":
        return setting
    return "device" if place(accelerator) == "cuda" else "cpu"


def randaugment(setting: str, few_shot_on: str | None = None) -> str:
    """--randaugment auto: frame, except off in the few-shot sweep on UCF-101 and HMDB-51
    (`few_shot_on`: the sweep's dataset), as the released few-shot configs at 092ad0a have it."""
    if setting != "auto":
        return setting
    off = few_shot_on is not None and few_shot_on.split("@")[0] in ("ucf101", "hmdb51")
    return "off" if off else "frame"


_announced = False


def decoder(setting: str = "auto", quiet: bool = False) -> str:
    """--decoder: auto takes torchcodec where FFmpeg's libraries load, else PyAV, and says once
    which; torchcodec named where they do not load is refused."""
    from tkvr.data.video import torchcodec_error  # deferred: loads torch (the dispatcher imports us)

    global _announced
    if setting not in DECODERS:
        raise TkvrError(f"--decoder {setting!r} is not known: choose one of {', '.join(DECODERS)}")
    if setting == "torchcodec":
        err = torchcodec_error()
        if err:
            raise TkvrError(
                f"--decoder torchcodec cannot load FFmpeg ({err}); install FFmpeg's shared "
                "libraries (apt-get install ffmpeg) or use --decoder pyav"
            )
        return setting
    if setting == "pyav":
        return setting
    chosen = "torchcodec" if torchcodec_error() is None else "pyav"
    if not _announced and not quiet:
        why = "" if chosen == "torchcodec" else f" (torchcodec unavailable: {torchcodec_error()})"
        say(f"decoder: {chosen}{why}")
        _announced = True
    return chosen


def workers(setting: int | None, devices: int = 1) -> int:
    """--workers as given, else the cores available to each device's process less one for the
    process itself: a GPU consumes clips faster than a few cores decode them, so no fixed cap."""
    if setting is not None:
        return setting
    local = int(os.environ.get("LOCAL_WORLD_SIZE", devices))  # processes on this node
    return max(0, cores() // max(1, local) - 1)


def eval_set(setting: str, seen: str, unseen: str) -> str:
    """zeroshot --eval-set auto: every video of another dataset than the training one (the
    released cross-dataset evaluation, 092ad0a), the val split of a class subset of the same
    (K100: its training videos are no one's). `seen`, `unseen`: the resolved dataset names."""
    if setting != "auto":
        return setting
    return "all" if seen.split("@")[0] != unseen.split("@")[0] else "val"


def resumed(out: str, resume: str) -> Path | None:
    """The checkpoint --resume names: auto is the run's own last checkpoint in --out, where it
    has one (None: nothing to resume yet, the run starts fresh)."""
    if resume != "auto":
        return Path(resume)
    last = Path(out) / "checkpoints" / "last.pt"
    return last if last.is_file() else None


def run_of(out: str, resume: str) -> Path:
    """The run folder whose config.yaml a --resume continues: --out for auto, else the folder
    holding the named checkpoint (RUN/checkpoints/NAME.pt)."""
    return Path(out) if resume == "auto" else Path(resume).parent.parent


# ---------------------------------------------------------------- the record
def automatic(cfg, device=None, inference: bool = False, source=None) -> dict:
    """What the automatic settings of a run (cfg: TrainConfig) become on this machine: a plan's
    and config.yaml's `auto:` section. device, source: where and how a scoring-only command
    (`inference`) runs and reads, if not as the run did."""
    world = cfg.device.world
    value, why = precision(device or cfg.device, inference)
    source = source or cfg.data
    return {
        "precision": value,
        "precision_why": why,
        "decoder": decoder(source.decoder, quiet=True),
        "workers": workers(source.workers, (device or cfg.device).devices),
        "augment": augment(cfg.data.augment, cfg.device.accelerator),
        "device_batch": cfg.optim.device_batch or cfg.optim.batch_size // world,
        "accumulation": cfg.optim.accumulation(world),
    }
