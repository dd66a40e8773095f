#!/usr/bin/env bash
# DRT vs static on one GPU: ResNet-101, batch 64, 224x224, training step + forward, static and every
# formulation (+ auto), torch and Keras (JAX backend if jax is installed, else Keras on the torch backend).
# One short run (< 8 minutes on an H100): 2 warm-up calls and 5 interleaved rounds per candidate.
#
#   bash scripts/gpu_bench.sh                    # on the GPU machine; writes results/perf/gpu.md (+ gpu_*.json)
#   GPU_BENCH_QUICK=1 bash scripts/gpu_bench.sh  # dry run on CPU: tiny ResNet-18 at 32x32, batch 2
#
# Env: OUT (folder for the JSON + report, default results/perf), GPU_BENCH_ROUNDS (5), GPU_BENCH_WARMUP (2),
# GPU_BENCH_KERAS_BACKEND (jax|torch|tensorflow|none; default: jax if importable, else torch).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/perf}"
ROUNDS="${GPU_BENCH_ROUNDS:-5}"
WARMUP="${GPU_BENCH_WARMUP:-2}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
export DRT_AUTOTUNE_CACHE="${DRT_AUTOTUNE_CACHE:-$OUT/autotune_gpu.json}"
if [[ "${GPU_BENCH_QUICK:-0}" == "1" ]]; then
  EXTRA=(--quick --device cpu)
  SUFFIX="_dryrun"
else
  EXTRA=(--warmup "$WARMUP" --rounds "$ROUNDS")
  SUFFIX=""
fi
python - <<'PY'
import importlib.util, sys
print("python", sys.version.split()[0])
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
except ImportError:
    print("torch missing")
for m in ("keras", "jax", "tensorflow"):
    print(m, "present" if importlib.util.find_spec(m) else "missing")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

start=$(date +%s)
python -m harness.bench --gpu --frameworks torch "${EXTRA[@]}" --json "$OUT/gpu_torch$SUFFIX.json" --no-readme
files=("$OUT/gpu_torch$SUFFIX.json")

KB="${GPU_BENCH_KERAS_BACKEND:-}"
if [[ -z "$KB" ]]; then
  if python -c "import jax" 2>/dev/null; then KB=jax; else KB=torch; fi
fi
if [[ "$KB" != "none" ]] && python -c "import keras" 2>/dev/null; then
  if KERAS_BACKEND="$KB" python -m harness.bench --gpu --frameworks keras "${EXTRA[@]}" \
      --json "$OUT/gpu_keras_$KB$SUFFIX.json" --no-readme; then
    files+=("$OUT/gpu_keras_$KB$SUFFIX.json")
  else
    echo "Keras ($KB backend) run failed; the report has torch only" >&2
  fi
fi
python -m harness.bench --render "${files[@]}" --out "$OUT/gpu$SUFFIX.md" \
  --title "DRT overhead on GPU (ResNet-101, batch 64, 224x224; Keras backend: $KB)"
echo "done in $(( $(date +%s) - start )) s: $OUT/gpu$SUFFIX.md"
