#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one pass, for a machine that has one (CI has none):
#   1. tests/test_fast_paths.py -m gpu: every GPU path of every cell (float64 fast loops) and
#      the Triton kernels (float32, D = 80) against the plain step loop;
#   2. the README's end-to-end job on the GPU, with the step loops and with the Triton kernels
#      (SEQEQ_GPU_KERNELS=1): search, final models, ONNX, report;
#   3. benchmarks/speed.py on the GPU, fast loops and Triton kernels (rows for RESULTS.md);
#   4. the whole test suite with the GPU visible (device "auto" picks it), 16 processes.
# Each step has its own time limit and its own log under $OUT (default /tmp/gpu-check); a step
# that fails does not stop the others. Needs torch with CUDA, triton and seqeq's dependencies
# (PYTHONPATH may point at them); SEQEQ_DATA_DIR at the staged data (tests that need an absent
# file skip).
#
#   OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh [tests] [e2e] [e2e-kernels] [speed] [suite]   (none: all)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
STEPS="$*"

step() {  # step NAME LIMIT_S COMMAND...: run with a limit, log to $OUT/NAME.log, say how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0))s"
  tail -n 25 "$OUT/$name.log"
}

nvidia-smi -L 2>&1
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')" 2>&1

want() { [ -z "$STEPS" ] || [[ " $STEPS " == *" $1 "* ]]; }
if want tests; then
  # GPU_TESTS="-k triton" narrows the selection; each Triton configuration compiles (~5 s)
  step gpu-tests "${GPU_TESTS_LIMIT:-300}" $PY -m pytest tests/test_fast_paths.py -m gpu -q \
    -p no:cacheprovider -rfE ${GPU_TESTS:-}
fi
if want e2e; then
  step e2e-loops 90 $PY -m seqeq bench randomwalk --budget-kb 4 --trials 3 --epochs 5 \
    --device cuda --out "$OUT/runs/loops" --json
fi
if want e2e-kernels; then
  SEQEQ_GPU_KERNELS=1 step e2e-kernels "${E2E_LIMIT:-150}" $PY -m seqeq bench randomwalk --budget-kb 4 \
    --trials 3 --epochs 5 --device cuda --out "$OUT/runs/kernels" --json
  rm -rf "$OUT/runs"
fi
if want speed; then
  # one row per line as it is measured (a step cut at its limit keeps the rows it finished)
  step speed-loops "${SPEED_LIMIT:-100}" $PY benchmarks/speed.py --device cuda --repeats 3 --no-reference
  step speed-kernels "${SPEED_LIMIT:-100}" $PY benchmarks/speed.py --device cuda --gpu-kernels --repeats 3 \
    --no-reference
fi
if want suite; then
  step suite 200 $PY -m pytest -v -p no:cacheprovider -n 16 -rfE
  grep -E "(FAILED|ERROR) " "$OUT/suite.log" | head -40
fi
