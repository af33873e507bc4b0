#!/usr/bin/env bash
# One short device check (at most ~8 minutes on one H100/H200):
#   ViT-B/16, 8 frames, bf16: training clips/s and MFU, with and without --compile;
#   ViT-L/14 peak memory at batch 8 (8 frames, bf16, gradient checkpointing off);
#   GPU (NVDEC) vs CPU decode clips/s over the toy world's videos;
#   end to end (benchmarks/e2e.py): ViT-B/16 tkvr train on the real clips before and after
#   tkvr prepare, against the compute-bound step (CLIPS: folder of the real clips).
# Writes its table to ${OUT:-.}/gpu_check.md (and one JSON per measurement).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # the same code paths on CPU with the tiny backbone
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-.}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python}
CLIPS=${CLIPS:-../shared/realdata/videos}
if [ "${1:-}" = "--dry-run" ]; then
  B16=tiny; L14=tiny; PREC=32-true; ACC=cpu; DEV=cpu; BATCH=2; STEPS=2; E2E="--steps 12 --skip 4 --samples 64 --batch 4"
else
  B16=ViT-B-16; L14=ViT-L-14; PREC=bf16-mixed; ACC=cuda; DEV=cuda; BATCH=32; STEPS=20
  E2E="--steps 60 --skip 20 --samples 2048 --batch 32 --workers $(( $(nproc) - 1 ))"
fi
export HF_HUB_OFFLINE=1
run() {  # name, extra args...
  local name=$1; shift
  $PY benchmarks/train_step.py --accelerator $ACC --precision $PREC --frames 8 --steps $STEPS --warmup 3 \
      --no-reference --json "$OUTDIR/$name.json" "$@"
}
run b16_eager --backbone $B16 --batch $BATCH
run b16_compile --backbone $B16 --batch $BATCH --compile
run l14_batch8 --backbone $L14 --batch 8 --steps 3
$PY benchmarks/e2e.py --backbone $B16 --precision $PREC --clips "$CLIPS" --json "$OUTDIR/e2e.json" $E2E \
  | tee "$OUTDIR/e2e.md"
$PY - "$OUTDIR" "$DEV" <<'PY'
import json, sys, time
from pathlib import Path
out, dev = Path(sys.argv[1]), sys.argv[2]
from tkvr.data.specs import resolve
from tkvr.data.sampling import segment_indices
from tkvr.data.video import VideoFile
samples = resolve("toy").split("val")[:120]
rates = {}
for device in (["cpu", "cuda"] if dev == "cuda" else ["cpu"]):
    t = time.perf_counter()
    for s in samples:
        v = VideoFile(s.path, "torchcodec", device)
        v.read(segment_indices(len(v), 8, False))
    rates[device] = len(samples) / (time.perf_counter() - t)
(out / "decode.json").write_text(json.dumps(rates))
rows = ["| measurement | value |", "|---|---:|"]
flops = json.loads((out / "b16_eager.json").read_text())["flops_per_clip"]  # compiled runs count none
rows.append(f"| ViT-B/16 T=8: GFLOP per clip (fwd+bwd) | {flops / 1e9:.1f} |")
for name, label in (("b16_eager", "ViT-B/16 T=8 train, eager"), ("b16_compile", "ViT-B/16 T=8 train, --compile")):
    r = json.loads((out / f"{name}.json").read_text())
    rows.append(f"| {label}: clips/s | {r['clips_per_s']:.1f} |")
    if r.get("peak_flops"):
        rows.append(f"| {label}: MFU | {100 * flops * r['clips_per_s'] / r['peak_flops']:.1f}% |")
r = json.loads((out / "l14_batch8.json").read_text())
rows.append(f"| ViT-L/14 T=8 batch 8: peak memory MiB | {r['peak_memory_mb']:.0f} |")
for device, v in rates.items():
    rows.append(f"| decode, toy 8-frame clips/s, {device} | {v:.1f} |")
e = json.loads((out / "e2e.json").read_text())
for k in ("compute", "original", "prepared"):
    rows.append(f"| e2e {k}: clips/s | {e[k]:.1f} ({100 * e[k] / e['compute']:.0f}% of compute-bound) |")
rows.append(f"| device | {r['device']} |")
(out / "gpu_check.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
