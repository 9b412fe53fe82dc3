#!/usr/bin/env bash
# Development set-up on a fresh machine: a virtual environment with vLLM 0.26.0, the build and test
# tools, and both extensions (vllm_sm7x._C, flash_attn_v100._C) built in place (editable).
#
#   bash tools/dev_setup.sh [VENV_DIR]      default: .venv
#
# Arch list: TORCH_CUDA_ARCH_LIST if set, else 7.0;7.5 with a CUDA 12.x toolkit, 7.5 with CUDA 13
# (setup_support/cuda_archs.py). For the lent H100 add 9.0: TORCH_CUDA_ARCH_LIST="7.5;9.0".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements/common.txt -r requirements/build.txt -r requirements/test.txt
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
# --no-build-isolation: build against the torch just installed (an isolated build would fetch another).
"$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e . -e flash-attention-v100
"$VENV/bin/python" -c "import vllm_sm7x._C, flash_attn_v100; print('vllm-sm7x ready:', flash_attn_v100.build_info())"
