#!/usr/bin/env bash
# Everything a lent GPU machine run needs, in one command (see docs/development.md for the call
# sequence). Builds both wheels with the system compiler, then runs what you name, writing logs and
# results under $OUT (the folder the `run` tool brings back).
#
#   bash tools/device/gpu.sh build                       # build only
#   bash tools/device/gpu.sh test [PYTEST ARGS...]       # build, then every GPU test (junit in $OUT)
#   bash tools/device/gpu.sh test-per-gpu EXPR...        # build, then one pytest -k EXPR per GPU, at once
#   bash tools/device/gpu.sh bench [BENCH ARGS...]       # build, then benchmarks/awq_gemm.py
#   bash tools/device/gpu.sh bench-attention [ARGS...]   # build, then benchmarks/attention.py
#   bash tools/device/gpu.sh decode-kernels [PATH] KERNEL... # build, then attention.py's decode cases (PATH,
#                                                        # sm75 unless given; no stock) once per FLASH_ATTN_V100_DECODE
#                                                        # value, one after the other (decode-kernels.tgz)
#   bash tools/device/gpu.sh bench-gdn [ARGS...]         # build, then benchmarks/gdn.py
#   bash tools/device/gpu.sh bench-gdn-prefill [ARGS...] # build, then benchmarks/gdn_prefill.py (needs vLLM)
#   bash tools/device/gpu.sh bench-serve [ARGS...]       # build, then benchmarks/serve.py (needs vLLM)
#   bash tools/device/gpu.sh bench-moe [ARGS...]         # build, then benchmarks/moe.py (needs vLLM)
#   bash tools/device/gpu.sh profile [sm70|sm75]         # build, then Nsight Compute counters of the decode
#                                                        # kernels (benchmarks/profile_kernels.py), summarised
#   bash tools/device/gpu.sh mtp-acceptance PATH:VARIANT... # build, then MTP acceptance per variant
#                                                        # (tools/device/mtp_acceptance.py), spread over the GPUs
#   bash tools/device/gpu.sh ab DIR SCRIPT [ARGS...]     # same-run A/B: this tree and the tree in DIR
#                                                        # (tools/device/ab-tree.sh REF makes it), both
#                                                        # built in place, this tree's benchmarks/SCRIPT
#                                                        # run on each in turn, SM7X_AB_ROUNDS (2) times
#   bash tools/device/gpu.sh all                         # build, tests, benchmark
#   bash tools/device/gpu.sh save-caches                 # compile caches into $OUT/caches (bring them home)
#   bash tools/device/gpu.sh stash-caches                # carried .device/caches kept for this machine's calls
# Several of these in one call, sharing its time budget: tools/device/steps.sh.
# SM7X_SKIP_BUILD=1 reuses the wheels a warm machine built before (only Python changed since).
# SM7X_FA_ONLY=1 builds and tests flash-attn-v100 alone (test: its GPU tests only; the benchmarks
# import vllm_sm7x's pure-Python helpers from the tree): no vLLM bundle, no stash calls, half the build.
# Tests stop themselves (SIGINT, so pytest still writes its summary) SM7X_CALL_LIMIT_S (570) seconds
# after this script started, before the run tool's 600 s limit would kill them without a report; their
# output is unbuffered, and generated checkpoints stay in SM7X_CHECKPOINT_CACHE (/tmp/sm7x-checkpoints)
# for the next call on the same machine.
#
# Compile caches: each engine start of a serving test spends most of its 100-250 s compiling and
# autotuning Triton kernels (FLA's GDN kernels, fused MoE) and in torch.compile, and a fresh machine
# has none of it. `save-caches` packs Triton's cache (autotune choices too, TRITON_CACHE_AUTOTUNING)
# and vLLM's torch.compile cache into <= 15 MiB parts under $OUT/caches; copied into .device/caches
# here, a later session stashes them (`stash-caches`, carrying .device/caches) and every test call
# restores them before it starts (same GPU model, Triton and vLLM: the caches are keyed by content).
#
# vLLM: after the two stash calls of ../shared/device/pack-vllm.sh, carry .device/vllm/p3 with the
# first call of this script; it extracts the bundle once (into /tmp/vllm-site, kept while the
# machine stays warm) and later calls find it there without carrying p3 again.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/sm7x-out}"
mkdir -p "$OUT"
# Each serving test starts a fresh engine process, and vLLM's FLA kernels autotune again in each (the
# compiled kernels are cached on disk already): keep the autotune choices on disk too.
export TRITON_CACHE_AUTOTUNING=1

# shellcheck source=tools/device/caches.sh
source tools/device/caches.sh

use_vllm_bundle() {
  if [ -f .device/vllm/p3/activate.sh ]; then
    # shellcheck disable=SC1091
    source .device/vllm/p3/activate.sh > "$OUT/vllm-activate.log" 2>&1  # never pipe `source`: a subshell
  elif [ -d /tmp/vllm-site/vllm ]; then
    export PYTHONPATH="/tmp/vllm-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  install_fa3
  python3 -c "import vllm, sys; print('vllm', vllm.__version__)" 2>/dev/null || echo "vllm: not available"
}

# Stock vLLM's FlashAttention build (tools/device/pack-fa3.sh), when carried: the stock reference needs it.
install_fa3() {
  if [ ! -f .device/fa3/_vllm_fa3_C.abi3.so.xz ]; then
    # Without it every stock run fails at model inspection ("requires the CUDA flash attention extensions").
    echo "fa3: not carried; stock vLLM runs (tests' references not cached in tests/gpu/stock_runs, stock" \
         "benchmark configurations) will fail: carry .device/fa3 from tools/device/pack-fa3.sh"
    return 0
  fi
  local target
  target=$(python3 -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('vllm').origin))")
  xz -dc .device/fa3/_vllm_fa3_C.abi3.so.xz > "$target/vllm_flash_attn/_vllm_fa3_C.abi3.so" && echo "fa3: installed"
}

build() {
  local packages=(-e . -e flash-attention-v100) modules="vllm_sm7x._C, flash_attn_v100"
  if [ -n "${SM7X_FA_ONLY:-}" ]; then
    packages=(-e flash-attention-v100)
    modules="flash_attn_v100"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if [ -n "${SM7X_SKIP_BUILD:-}" ] && python3 -c "import $modules" 2>/dev/null; then
    echo "build: skipped (SM7X_SKIP_BUILD, warm machine already has the wheels: $modules)"
    return
  fi
  # The image's CXX/CUDAHOSTCXX link libstdc++ statically; setup refuses such a module.
  export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
  # The image presets TORCH_CUDA_ARCH_LIST=9.0a; we need Turing code beside the H100's.
  export TORCH_CUDA_ARCH_LIST="${SM7X_ARCH_LIST:-7.5;9.0}"
  local start=$SECONDS
  if ! python3 -m pip install --no-build-isolation --no-deps "${packages[@]}" > "$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log"
    echo "build: FAILED (log in build.log)"
    exit 1
  fi
  echo "build: ok in $((SECONDS - start)) s"
}

# pytest_gpu NAME [PYTEST ARGS...]: the GPU tests, log NAME.log and junit NAME.xml in $OUT, stopped
# (SIGINT, summary kept) at the call's time limit.
pytest_gpu() {
  local name=$1
  shift
  local budget=$(( ${SM7X_CALL_LIMIT_S:-570} - SECONDS )) paths=(tests/gpu flash-attention-v100/tests)
  [ -n "${SM7X_FA_ONLY:-}" ] && paths=(flash-attention-v100/tests)  # tests/gpu's modules import vLLM
  PYTHONUNBUFFERED=1 SM7X_CHECKPOINT_CACHE="${SM7X_CHECKPOINT_CACHE:-/tmp/sm7x-checkpoints}" \
    SM7X_STOCK_RUNS_OUT="$OUT/stock-runs" timeout -s INT -k 20 "$budget" python3 -m pytest "${paths[@]}" -m gpu -q \
    -p no:cacheprovider -ra --durations=10 --junitxml="$OUT/$name.xml" "$@" > "$OUT/$name.log" 2>&1
}

gpu_tests() {
  pytest_gpu gpu-tests "$@"
  local rc=$?
  tail -25 "$OUT/gpu-tests.log"
  pack_stock_runs
  return $rc
}

# The stock vLLM runs the tests made (tests/gpu/stock_runs/README.md) in one archive, for committing.
pack_stock_runs() {
  local runs=()
  [ -d "$OUT/stock-runs" ] && mapfile -t runs < <(cd "$OUT/stock-runs" && ls -- *.json 2>/dev/null)
  if [ "${#runs[@]}" -gt 0 ]; then
    tar czf "$OUT/stock-runs.tgz" -C "$OUT/stock-runs" "${runs[@]}" &&
      echo "stock-runs.tgz: ${#runs[@]} new stock vLLM run(s); unpack into tests/gpu/stock_runs/ and commit them"
  fi
  rm -rf "$OUT/stock-runs"  # .partial files of a stopped run, or nothing
}

# test-per-gpu EXPR...: one pytest per -k expression, all at once, each on its own GPU of a multi-GPU
# machine (independent serving tests: a call does N calls' work). Each keeps its own checkpoint cache,
# so two never write one folder; logs gpu-tests-<i>.log.
gpu_tests_per_gpu() {
  local gpus i=0 rc=0 pids=()
  gpus=$(nvidia-smi --list-gpus | wc -l)
  if [ "$#" -gt "$gpus" ]; then
    echo "test-per-gpu: $# expressions for $gpus GPU(s); ask for a machine with more, or give fewer"
    exit 2
  fi
  for expression in "$@"; do
    CUDA_VISIBLE_DEVICES=$i SM7X_CHECKPOINT_CACHE="/tmp/sm7x-checkpoints-gpu$i" \
      pytest_gpu "gpu-tests-$i" -s -k "$expression" &
    pids+=($!)
    i=$((i + 1))
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  pack_stock_runs
  i=0
  for expression in "$@"; do
    echo "== GPU $i: -k \"$expression\""
    tail -12 "$OUT/gpu-tests-$i.log"
    i=$((i + 1))
  done
  return $rc
}

# benchmark SCRIPT LOG [ARGS...]: runs benchmarks/SCRIPT on both emulated paths, log and JSON in $OUT.
benchmark() {
  local script=$1 log=$2
  shift 2
  SM7X_COMMIT="${SM7X_COMMIT:-unknown}" python3 "benchmarks/$script" --path sm70 sm75 --out "$OUT" "$@" \
    > "$OUT/$log" 2>&1
  local rc=$?
  grep -vE "^(INFO|WARNING|DEBUG)" "$OUT/$log" | tail -60
  return $rc
}

# decode-kernels [sm70|sm75] KERNEL...: the decode cases of benchmarks/attention.py (that path, sm75 when
# not given; no stock baselines) with FLASH_ATTN_V100_DECODE set to each kernel in turn, in one run; JSON
# and logs in decode-kernels.tgz.
decode_kernels() {
  local kernel rc=0 path=sm75
  case "${1:-}" in sm70|sm75) path=$1; shift ;; esac
  mkdir -p "$OUT/decode-kernels"
  for kernel in "$@"; do
    FLASH_ATTN_V100_DECODE=$kernel SM7X_COMMIT="${SM7X_COMMIT:-unknown}" python3 benchmarks/attention.py \
      --path "$path" --no-stock --decode-only --out "$OUT/decode-kernels/$kernel" \
      > "$OUT/decode-kernels/$kernel.log" 2>&1 || { echo "decode-kernels: $kernel failed ($kernel.log)"; rc=1; }
    echo "== FLASH_ATTN_V100_DECODE=$kernel"
    grep -vE "^(INFO|WARNING|DEBUG)" "$OUT/decode-kernels/$kernel.log" | tail -40
  done
  (cd "$OUT" && tar czf decode-kernels.tgz decode-kernels && rm -rf decode-kernels) || rc=1
  return $rc
}

# profile [PATH]: each case of benchmarks/profile_kernels.py (SM7X_PROFILE_CASES narrows them) under
# ncu, the counters of its "measured" launch as a raw CSV per case (ncu-raw.tgz), then one summary
# (ncu-summary.txt).
# Clocks are left as they are (--clock-control none). ncu reads counters on Firecracker machines only
# (KINDS.md); elsewhere the summary says nothing was profiled.
profile_kernels() {
  local path=${1:-sm75} ncu
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
  if [ -z "$ncu" ]; then
    echo "profile: ncu not found"
    return 1
  fi
  for case in ${SM7X_PROFILE_CASES:-$(python3 benchmarks/profile_kernels.py --list)}; do
    "$ncu" --clock-control none --nvtx --nvtx-include "measured/" --print-units base --csv --page raw \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section SchedulerStats --section InstructionStats \
      --section ComputeWorkloadAnalysis \
      --metrics dram__bytes_read.sum,dram__bytes_read.sum.per_second,smsp__issue_active.avg.pct_of_peak_sustained_active \
      --log-file "$OUT/ncu-$case.csv" \
      python3 benchmarks/profile_kernels.py --path "$path" --case "$case" >> "$OUT/ncu.log" 2>&1 \
      || echo "profile: ncu failed on $case (ncu.log)"
  done
  if ! compgen -G "$OUT/ncu-*.csv" > /dev/null; then
    echo "profile: ncu wrote no report (ncu.log)"
    return 1
  fi
  python3 tools/device/ncu_summary.py "$OUT"/ncu-*.csv | tee "$OUT/ncu-summary.txt"
  # One archive for the raw pages: the run tool brings back 8 files.
  tar czf "$OUT/ncu-raw.tgz" -C "$OUT" $(cd "$OUT" && ls ncu-*.csv) && rm -f "$OUT"/ncu-*.csv
}

# mtp-acceptance PATH:VARIANT...: tools/device/mtp_acceptance.py, the runs dealt round-robin over the
# GPUs (one process each, at once); logs mtp-acceptance-<gpu>.log.
mtp_acceptance() {
  local gpus g j pids=()
  gpus=$(nvidia-smi --list-gpus | wc -l)
  for ((g = 0; g < gpus && g < $#; g++)); do
    local mine=()
    for ((j = g; j < $#; j += gpus)); do mine+=("${@:j+1:1}"); done
    CUDA_VISIBLE_DEVICES=$g SM7X_CHECKPOINT_CACHE="/tmp/sm7x-checkpoints-gpu$g" PYTHONUNBUFFERED=1 \
      python3 tools/device/mtp_acceptance.py "${mine[@]}" > "$OUT/mtp-acceptance-$g.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  grep -h "^MTP acceptance\|Error" "$OUT"/mtp-acceptance-*.log | tail -20
}

# ab DIR SCRIPT [ARGS...]: one benchmark script (this tree's, so both sides measure alike) on this
# tree and on the tree in DIR, alternated; each built in place for SM7X_ARCH_LIST (9.0: the emulated
# paths run there) and imported through PYTHONPATH, no vLLM bundle. Logs and JSON: $OUT/ab-{this,ref}-N.
ab_runs() {
  local ref_dir script names=(this ref) trees i round
  ref_dir=$(cd "$1" && pwd) || exit 2
  script=$2
  shift 2
  trees=("$PWD" "$ref_dir")
  export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++ TORCH_CUDA_ARCH_LIST="${SM7X_ARCH_LIST:-9.0}"
  export MAX_JOBS="${MAX_JOBS:-8}"
  local builds=() failed=0
  for i in 0 1; do  # both wheels of each tree, in place (flash-attention-v100 from its own folder);
    # SM7X_FA_ONLY=1: flash-attention-v100 alone (its benchmarks need only vllm_sm7x's Python)
    (cd "${trees[$i]}" && { [ -n "${SM7X_FA_ONLY:-}" ] || python3 setup.py build_ext --inplace; } &&
       cd flash-attention-v100 && python3 setup.py build_ext --inplace) > "$OUT/build-ab-${names[$i]}.log" 2>&1 &
    builds+=($!)
  done
  for i in 0 1; do
    wait "${builds[$i]}" || { echo "ab: the ${names[$i]} build failed (build-ab-${names[$i]}.log)"; failed=1; }
  done
  [ "$failed" = 0 ] || return 1
  local commits=("${SM7X_COMMIT:-unknown}" "$(cat "$ref_dir/AB_COMMIT" 2>/dev/null || echo ref)")
  for round in $(seq "${SM7X_AB_ROUNDS:-2}"); do
    for i in 0 1; do
      local budget=$(( ${SM7X_CALL_LIMIT_S:-570} - SECONDS ))
      [ "$budget" -gt 10 ] || { echo "ab: out of time before ${names[$i]} round $round"; return 1; }
      # The ref side runs this tree's script against the ref tree's vllm_sm7x: options its API
      # lacks (e.g. --tune) fail there, visibly in the log and the exit status.
      SM7X_COMMIT="${commits[$i]}" PYTHONPATH="${trees[$i]}:${trees[$i]}/flash-attention-v100${PYTHONPATH:+:$PYTHONPATH}" \
        timeout -s INT "$budget" python3 "benchmarks/$script" --out "$OUT/ab-${names[$i]}-$round" "$@" \
        > "$OUT/ab-${names[$i]}-$round.log" 2>&1 || { echo "ab: ${names[$i]} round $round failed"; failed=1; }
      grep -vE "^(INFO|WARNING|DEBUG)" "$OUT/ab-${names[$i]}-$round.log" | tail -40 | sed "s/^/${names[$i]}$round /"
    done
  done
  # At most 8 files come back from $OUT: the runs' result folders travel as one archive.
  (cd "$OUT" && tar czf ab-results.tgz ab-this-*/ ab-ref-*/ && rm -rf ab-this-*/ ab-ref-*/) || failed=1
  return "$failed"
}

command="${1:-all}"
shift || true
case "$command" in  # the cache commands need no GPU work, build or vLLM
  save-caches) save_caches; exit ;;
  stash-caches) stash_caches; exit ;;
  ab) nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; ab_runs "$@"; exit $? ;;
esac
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
restore_caches
use_vllm_bundle
build
case "$command" in
  build) ;;
  test) gpu_tests "$@" ;;
  test-per-gpu) gpu_tests_per_gpu "$@" ;;
  bench) benchmark awq_gemm.py awq_gemm.log "$@" ;;
  bench-attention) benchmark attention.py attention.log "$@" ;;
  decode-kernels) decode_kernels "$@" ;;
  bench-gdn) benchmark gdn.py gdn.log "$@" ;;
  bench-gdn-prefill) benchmark gdn_prefill.py gdn_prefill.log "$@" ;;
  bench-serve) benchmark serve.py serve.log "$@" ;;
  bench-moe) benchmark moe.py moe.log "$@" ;;
  profile) profile_kernels "$@" ;;
  mtp-acceptance) mtp_acceptance "$@" ;;
  all) gpu_tests; benchmark awq_gemm.py awq_gemm.log --tune ;;
  *) echo "unknown command '$command': build | test | test-per-gpu | bench | bench-attention | decode-kernels | bench-gdn | bench-gdn-prefill | bench-serve | bench-moe | profile | mtp-acceptance | ab | all | save-caches | stash-caches"; exit 2 ;;
esac
