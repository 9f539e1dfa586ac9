#!/usr/bin/env bash
# The speed table on one CUDA GPU (written for an H100/H200 without internet; mamba-ssm need not be installed).
#
#   bash benchmarks/gpu.sh                 # results in $OUT if set, else ./gpu_results
#   STEP_TIMEOUT=300 bash benchmarks/gpu.sh
#
# Runs benchmarks/speed.py --device cuda several times, each into its own JSON (and .log):
#   fp32_torchscan    ECGMamba with the pure-PyTorch scan (scan_backend=torch), fp32, all models
#   bf16_torchscan    the same under bf16 autocast
#   fp32_mambassm     mamba-ssm's fused CUDA scan (scan_backend=cuda): only where `import mamba_ssm` works
#   bf16_mambassm     the same under bf16 autocast
#   compile_fp32      every model eager and under torch.compile (a column each), 10 s only (compiling per shape
#                     takes long), compiled logits checked against eager ones (logits_max_abs_diff in the JSON)
#   compile_bf16      the same under bf16 autocast
#   candidates        the candidate ECGMamba defaults (FLOPs, params, batch-32 throughput at 10 s), bf16
# Each JSON's models.ecgmamba.scan_backend records the scan path selective_scan.resolve_backend chose (under
# torch.compile on CUDA the scan traces the pure-PyTorch path). Every step has a time limit and a failing step
# does not stop the others. Untested so far: written on a machine without a GPU.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-gpu_results}"
STEP_TIMEOUT="${STEP_TIMEOUT:-420}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT_DIR"

{
    date -u
    nvidia-smi || echo "nvidia-smi unavailable"
    "$PYTHON" - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
try:
    import mamba_ssm
    print("mamba_ssm", mamba_ssm.__version__)
except Exception as exc:
    print("mamba_ssm unavailable:", type(exc).__name__, exc)
EOF
} 2>&1 | tee "$OUT_DIR/env.txt"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: nothing to run" | tee -a "$OUT_DIR/env.txt"
    exit 1
fi
HAVE_MAMBA_SSM=0
"$PYTHON" -c "from mamba_ssm.ops.selective_scan_interface import selective_scan_fn" 2>/dev/null && HAVE_MAMBA_SSM=1

status=0
run_step() {  # run_step NAME ARGS...: one speed.py run with a time limit
    local name="$1"
    shift
    echo "=== $name: speed.py $* (limit ${STEP_TIMEOUT}s)"
    timeout --signal=INT --kill-after=30 "$STEP_TIMEOUT" \
        "$PYTHON" benchmarks/speed.py --device cuda --json "$OUT_DIR/$name.json" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "=== $name FAILED (exit $rc)" | tee -a "$OUT_DIR/$name.log"
        status=1
    fi
}

# More repetitions than on CPU (GPU calls are short); long cases stay within the per-case budget.
COMMON=(--reps 20 --min_reps 5 --case_budget 30)

run_step fp32_torchscan "${COMMON[@]}" --scan_backend torch
run_step bf16_torchscan "${COMMON[@]}" --scan_backend torch --amp bf16
if [ "$HAVE_MAMBA_SSM" = 1 ]; then
    run_step fp32_mambassm "${COMMON[@]}" --scan_backend cuda
    run_step bf16_mambassm "${COMMON[@]}" --scan_backend cuda --amp bf16
else
    echo "=== mamba-ssm does not import: its CUDA scan is not measured" | tee -a "$OUT_DIR/env.txt"
fi
run_step compile_fp32 "${COMMON[@]}" --compile --lengths 1000
run_step compile_bf16 "${COMMON[@]}" --compile --lengths 1000 --amp bf16
run_step candidates --reps 20 --candidates --skip_main --amp bf16

echo "results in $OUT_DIR"
exit $status
