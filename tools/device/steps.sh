#!/usr/bin/env bash
# Several tools/device/gpu.sh commands in one call of the run tool. A lent machine left idle for about
# 30 s is given back, and reading one call's results before starting the next is often longer than that
# (in the twenty-third session: a bare machine, its rebuild and the vLLM stash redone). So put the
# work of a session's minutes into one call:
#
#   bash tools/device/steps.sh 'test -k "sm75 and mtp_keeps"' \
#       'FLASH_ATTN_V100_DECODE=pairs test -k "sm75 and mtp_keeps"' 'profile sm75'
#
# Each step is one gpu.sh command line (leading NAME=value words set its environment), with its own
# $OUT/stepN/ folder (console.log, the command in step.txt, whatever gpu.sh writes). The wheels are built
# by the first step only (later steps get SM7X_SKIP_BUILD=1). The steps share the call's budget,
# SM7X_CALL_LIMIT_S (575) seconds from the start: each is stopped (SIGINT to its process group, so pytest
# still prints its summary) when the budget is spent, and a step that would start with less than
# SM7X_STEP_MIN_S (60) seconds left is skipped and named. At the end the step folders become
# $OUT/steps.tgz (the run tool brings back at most 8 files) and each step's last lines are printed.
# The exit status is 0 when every step ran and succeeded. SM7X_GPU_SH replaces gpu.sh (tests).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/sm7x-out}"
gpu_sh="${SM7X_GPU_SH:-tools/device/gpu.sh}"
limit=${SM7X_CALL_LIMIT_S:-575}
min_left=${SM7X_STEP_MIN_S:-60}
tail_lines=${SM7X_STEP_TAIL:-15}
mkdir -p "$OUT"

status=0 step_number=0 dirs=()
for step in "$@"; do
  step_number=$((step_number + 1))
  left=$((limit - SECONDS))
  if [ "$left" -lt "$min_left" ]; then
    echo "== step $step_number skipped: $left s of the budget left: $step"
    status=1
    continue
  fi
  dir="$OUT/step$step_number"
  mkdir -p "$dir"
  dirs+=("step$step_number")
  echo "$step" > "$dir/step.txt"
  eval "words=($step)"  # the step's own quoting, as a shell would read it
  assignments=()
  while [ "${#words[@]}" -gt 0 ] && [[ "${words[0]}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
    assignments+=("${words[0]}")
    words=("${words[@]:1}")
  done
  build=()
  [ "$step_number" -gt 1 ] && build=(SM7X_SKIP_BUILD=1)
  start=$SECONDS
  timeout -s INT -k 20 "$left" env "${build[@]}" "${assignments[@]}" OUT="$dir" SM7X_CALL_LIMIT_S="$left" \
    bash "$gpu_sh" "${words[@]}" > "$dir/console.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || status=1
  echo "== step $step_number (exit $rc, $((SECONDS - start)) s): $step"
  tail -n "$tail_lines" "$dir/console.log"
done

if [ "${#dirs[@]}" -gt 0 ]; then
  (cd "$OUT" && tar czf steps.tgz "${dirs[@]}" && rm -rf "${dirs[@]}") || status=1
fi
exit "$status"
