#!/usr/bin/env bash
# One prepared GPU run, under 10 minutes on one H100/H200 (Python 3.12, torch + JAX; Keras on JAX, no TF):
#
#  1. e2e training throughput (python -m harness.bench e2e): a synthetic DomainNet JPEG tree (published layout,
#     345 classes; generated once, cached under the data root), ResNet-101, batch 32 source + 32 target,
#     method mcd_grl, static and DRT (sr): data-only / compute-only / e2e images/s and which side bounds the step
#       a. torch: fp32 and bf16 (autocast), loader workers 0 and W
#       b. torch: bf16, default vs channels_last memory format, W workers
#       c. Keras (JAX backend): fp32 and bf16 (mixed policy), W workers
#  2. DRT overhead (python -m harness.bench --gpu): ResNet-101, batch 64, 224x224, training step + forward,
#     static and every formulation (+ auto), torch then Keras (JAX if installed, else Keras on torch)
#
#   bash scripts/gpu_bench.sh                      # on the GPU machine: results/perf/gpu.md, gpu_e2e.md (+ JSON)
#   GPU_BENCH_QUICK=1 bash scripts/gpu_bench.sh    # tiny real run on CPU (ResNet-18 at 32x32, batch 2; files *_dryrun)
#   GPU_BENCH_DRY_RUN=1 bash scripts/gpu_bench.sh  # seconds: every step prints its plan (--dry-run), nothing runs
#                                                  # (with GPU_BENCH_QUICK=1: the quick run's plans)
#
# Every step runs under `timeout` with its own cap, cut further so that the whole script ends within
# GPU_BENCH_BUDGET_S seconds; a step that runs out of time is interrupted (SIGINT) and keeps what it measured
# (both benchmarks write their JSON after every round/group; the report says "partial run").
#
# Env: PYTHON (python), OUT (folder for JSON + reports, default results/perf), GPU_BENCH_BUDGET_S (total, 570),
# GPU_BENCH_PARTS (comma list of e2e, overhead; default both), GPU_BENCH_ROUNDS (overhead rounds, 5),
# GPU_BENCH_WARMUP (overhead warm-up calls, 2), GPU_BENCH_E2E_ROUNDS (3), GPU_BENCH_E2E_STEPS (8 steps per call),
# GPU_BENCH_WORKERS (e2e loader workers per loader; default "0,W" with W = usable cores / 2 - 1: a step has
# a source and a target loader), GPU_BENCH_KERAS_BACKEND (jax|torch|tensorflow|none; default jax if
# installed, else torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-results/perf}"
ROUNDS="${GPU_BENCH_ROUNDS:-5}"
WARMUP="${GPU_BENCH_WARMUP:-2}"
BUDGET="${GPU_BENCH_BUDGET_S:-570}"
PARTS=",${GPU_BENCH_PARTS:-e2e,overhead},"
E2E_ROUNDS="${GPU_BENCH_E2E_ROUNDS:-3}"
E2E_STEPS="${GPU_BENCH_E2E_STEPS:-8}"
DRY="${GPU_BENCH_DRY_RUN:-0}"
QUICK="${GPU_BENCH_QUICK:-0}"
CORES=$("$PY" -c "import os; print(len(os.sched_getaffinity(0)))" 2>/dev/null || nproc)
W=$(( CORES / 2 - 1 )); (( W < 1 )) && W=1
WORKERS="${GPU_BENCH_WORKERS:-0,$W}"
WMAX="${WORKERS##*,}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
export DRT_AUTOTUNE_CACHE="${DRT_AUTOTUNE_CACHE:-$OUT/autotune_gpu.json}"
start=$(date +%s)
deadline=$(( start + BUDGET ))
RESERVE=20  # seconds kept for the reports at the end

has() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

# run_step CAP CMD...: CMD under a time limit of min(CAP, time left before the deadline less RESERVE);
# SIGINT first (the benchmarks keep what they measured), SIGKILL 20 s later. Never fails the script.
run_step() {
  local cap=$1; shift
  local left=$(( deadline - $(date +%s) - RESERVE ))
  (( left < cap )) && cap=$left
  if (( cap < 15 )); then
    echo "[gpu_bench] skipped (no time left): $*" >&2
    return 0
  fi
  echo "[gpu_bench] (limit ${cap}s) $*"
  local rc=0
  if [[ "$DRY" == "1" ]] || ! command -v timeout >/dev/null; then
    "$@" || rc=$?
  else
    timeout -s INT -k 20 "$cap" "$@" || rc=$?
  fi
  (( rc != 0 )) && echo "[gpu_bench] exit status $rc: $*" >&2
  return 0
}

if [[ "$QUICK" == "1" ]]; then
  EXTRA=(--quick --device cpu)
  E2E=(--arch resnet18 --crop 32 --batch-size 2 --steps 2 --rounds 1 --warmup 1 --images-per-domain 4
       --formulation kernel_merge --device cpu --json)
  SUFFIX="_dryrun"
  WORKERS="0,1"; WMAX=1
else
  EXTRA=(--warmup "$WARMUP" --rounds "$ROUNDS")
  E2E=(--arch resnet101 --batch-size 32 --steps "$E2E_STEPS" --rounds "$E2E_ROUNDS" --warmup 1 --json)
  SUFFIX=""
fi
if [[ "$DRY" == "1" ]]; then
  EXTRA+=(--dry-run)
  E2E+=(--dry-run)
  echo "[gpu_bench] dry run: every step prints its plan; nothing is built, measured or written"
else
  "$PY" - <<'PY'
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
fi
TORCH_DEV=cuda
[[ "$QUICK" == "1" ]] && TORCH_DEV=cpu

KB="${GPU_BENCH_KERAS_BACKEND:-}"
if [[ -z "$KB" ]]; then
  if has jax; then KB=jax; else KB=torch; fi
fi
KERAS_OK=0
[[ "$KB" != "none" ]] && has keras && KERAS_OK=1

# ---- 1. e2e throughput --------------------------------------------------------------------------------
e2e_files=()
if [[ "$PARTS" == *",e2e,"* ]]; then
  E2E_BASE=(-m harness.bench e2e --out "$OUT" "${E2E[@]}")
  run_step 90 "$PY" "${E2E_BASE[@]}" --prepare --gen-workers "$CORES"
  name="e2e_gpu_torch$SUFFIX"
  run_step 140 "$PY" "${E2E_BASE[@]}" --frameworks torch --device "$TORCH_DEV" --name "$name" \
    --variants static,sr --precision fp32,bf16 --workers "$WORKERS" --budget 100
  e2e_files+=("$OUT/$name.json")
  name="e2e_gpu_torch_cl$SUFFIX"
  run_step 75 "$PY" "${E2E_BASE[@]}" --frameworks torch --device "$TORCH_DEV" --name "$name" \
    --variants static,sr --precision bf16 --memory-format default,channels_last --workers "$WMAX" --budget 50
  e2e_files+=("$OUT/$name.json")
  if (( KERAS_OK )); then
    name="e2e_gpu_keras_$KB$SUFFIX"
    KERAS_BACKEND="$KB" run_step 120 "$PY" "${E2E_BASE[@]}" --frameworks keras --name "$name" \
      --variants static,sr --precision fp32,bf16 --workers "$WMAX" --budget 80
    e2e_files+=("$OUT/$name.json")
  else
    echo "[gpu_bench] Keras e2e skipped (backend '$KB' or keras not installed)" >&2
  fi
fi

# ---- 2. DRT overhead (ResNet-101 forward / training step, every formulation) ----------------------------
files=()
if [[ "$PARTS" == *",overhead,"* ]]; then
  run_step 120 "$PY" -m harness.bench --gpu --frameworks torch "${EXTRA[@]}" --json "$OUT/gpu_torch$SUFFIX.json" --no-readme
  files+=("$OUT/gpu_torch$SUFFIX.json")
  if (( KERAS_OK )); then
    KERAS_BACKEND="$KB" run_step 600 "$PY" -m harness.bench --gpu --frameworks keras "${EXTRA[@]}" \
      --json "$OUT/gpu_keras_$KB$SUFFIX.json" --no-readme
    files+=("$OUT/gpu_keras_$KB$SUFFIX.json")
  fi
fi

# ---- reports ------------------------------------------------------------------------------------------
if [[ "$DRY" == "1" ]]; then
  echo "[gpu_bench] dry run done in $(( $(date +%s) - start )) s; a real run writes $OUT/gpu_e2e.md and $OUT/gpu.md"
  exit 0
fi
present() { local f; for f in "$@"; do [[ -s "$f" ]] && echo "$f"; done; }
mapfile -t have_e2e < <(present "${e2e_files[@]+"${e2e_files[@]}"}")
if (( ${#have_e2e[@]} )); then
  "$PY" -m harness.bench e2e --render "${have_e2e[@]}" --out "$OUT" --name "gpu_e2e$SUFFIX" \
    --title "End-to-end training throughput on GPU (ResNet-101, batch 32+32, 224x224; Keras backend: $KB)" || true
fi
mapfile -t have < <(present "${files[@]+"${files[@]}"}")
if (( ${#have[@]} )); then
  "$PY" -m harness.bench --render "${have[@]}" --out "$OUT/gpu$SUFFIX.md" \
    --title "DRT overhead on GPU (ResNet-101, batch 64, 224x224; Keras backend: $KB)" || true
fi
echo "done in $(( $(date +%s) - start )) s: $OUT/gpu_e2e$SUFFIX.md $OUT/gpu$SUFFIX.md"
