#!/usr/bin/env bash
# Stock vLLM on the H100 (the reference our emulated runs are compared with) imports
# vllm.vllm_flash_attn, which needs one FlashAttention build; ../shared/device/pack-vllm.sh drops them
# for size. This packs the Hopper one (FA3, ~13 MB compressed) into .device/fa3 (git-ignored); carry
# it with a gpu.sh call and the script puts it into the vLLM bundle.
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE_VLLM=$(${PYTHON:-/work/venv/bin/python} -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('vllm').origin))")
mkdir -p .device/fa3
xz -T0 -6 -c "$SITE_VLLM/vllm_flash_attn/_vllm_fa3_C.abi3.so" > .device/fa3/_vllm_fa3_C.abi3.so.xz
ls -l .device/fa3
