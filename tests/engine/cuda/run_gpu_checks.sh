#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One round of CUDA backend checks on a GPU machine, from a build folder made elsewhere for sm_90 (or here).
# Usage: tests/engine/cuda/run_gpu_checks.sh [BUILD_DIR=build-cuda] [--quick]
# Runs: the gpu-labelled gtest binaries (parity + backend faults), compute-sanitizer memcheck over the ops test
# and racecheck over attention (skipped with --quick), then the kernel lab (copy bandwidth and GEMM rate; the
# attention kernels — tensor-core prefill, split-KV decode, in a CUDA graph — vs their floors and the generic
# kernel; GEMV vs cuBLAS).
# Logs go to $OUT (or ./gpu-checks) and the end of the output is a short summary.
set -u
BUILD=${1:-build-cuda}
QUICK=0
[[ "${2:-}" == "--quick" || "${1:-}" == "--quick" ]] && QUICK=1
[[ "$BUILD" == "--quick" ]] && BUILD=build-cuda
LOG=${OUT:-./gpu-checks}
mkdir -p "$LOG"
BIN="$BUILD/bin"
# cuBLAS comes from the toolkit on the GPU machine (RPATH may name this build machine's toolkit path).
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG/gpu.txt"
declare -A RC
run() {  # name, command...
  local name=$1; shift
  echo "=== $name: $*"
  "$@" > "$LOG/$name.log" 2>&1
  RC[$name]=$?
  tail -n 25 "$LOG/$name.log"
}
run backend "$BIN/tst_cuda_backend"
run ops "$BIN/tst_cuda_ops"
if [[ $QUICK == 0 ]] && command -v compute-sanitizer > /dev/null; then
  run memcheck env PIXTRAL_CUDA_TEST_QUICK=1 compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/tst_cuda_ops" \
      --gtest_filter='CudaOps.*:-CudaOps.RmsNormAndFusedResidual'
  run racecheck env PIXTRAL_CUDA_TEST_QUICK=1 compute-sanitizer --tool racecheck --error-exitcode 3 \
      "$BIN/tst_cuda_ops" --gtest_filter='CudaOps.Attention:CudaOps.DecodeStep*'
fi
run lab "$BIN/pixtral_cuda_lab" $([[ $QUICK == 1 ]] && echo 10 || echo 50)
echo
echo "=== summary (exit codes; 0 = pass)"
for k in "${!RC[@]}"; do echo "$k: ${RC[$k]}"; done
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$LOG"/backend.log "$LOG"/ops.log | head -20
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG"/*.log 2>/dev/null
sed -n '/copy bandwidth/,$p' "$LOG/lab.log"
