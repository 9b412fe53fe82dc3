#!/usr/bin/env bash
# Build vLLM 0.26.0 with machine code for sm_70 (V100) against torch 2.11.0+cu126.
#
# Why: PyPI's vLLM wheels link CUDA 13 and carry sm_75+ code only, and torch dropped sm_70 from its
# CUDA 12.8+/13 builds; on a V100 the only working pair is torch 2.11.0+cu126 with a vLLM compiled
# from source by a CUDA 12.6/12.8 toolkit for "7.0;7.5". vllm-sm7x keeps the serving path off vLLM's
# kernels on SM70 where it can, but vLLM must still import and load its extension on that torch.
#
#   bash tools/build_vllm_sm70.sh [--dry-run]
#   env: CUDA_HOME (default /usr/local/cuda-12.8), SRC (default ./vllm-src), MAX_JOBS (default: cores),
#        PIP (default: python3 -m pip; use the venv you serve from)
#
# Checked on the project's machines only as far as they allow (no V100, no CUDA 12 nvcc there):
# CI runs it with --dry-run and bash -n. The build itself takes 1-3 hours on 16 cores.
set -euo pipefail
VLLM_VERSION=0.26.0
TORCH_VERSION=2.11.0
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda-12.8}"
SRC="${SRC:-$PWD/vllm-src}"
PIP="${PIP:-python3 -m pip}"
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1

run() { echo "+ $*"; [ "$DRY_RUN" = 1 ] || eval "$@"; }

if [ "$DRY_RUN" = 0 ]; then
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "error: no nvcc in CUDA_HOME=$CUDA_HOME: install the CUDA 12.8 (or 12.6) toolkit" >&2; exit 1; }
  "$CUDA_HOME/bin/nvcc" --version | grep -q "release 12\." || {
    echo "error: $CUDA_HOME is not a CUDA 12.x toolkit; CUDA 13 cannot compile for sm_70" >&2; exit 1; }
fi

# 1. torch with sm_70 kernels (cu126 is the last index whose torch 2.11 wheels carry sm_70).
run "$PIP install torch==$TORCH_VERSION torchvision==0.26.0 torchaudio==$TORCH_VERSION --index-url https://download.pytorch.org/whl/cu126"
# 2. vLLM sources at the pinned release.
run "[ -d '$SRC' ] || git clone --depth 1 --branch v$VLLM_VERSION https://github.com/vllm-project/vllm '$SRC'"
# 3. Keep the torch installed above (vLLM's own script drops its torch pins).
run "cd '$SRC' && python3 use_existing_torch.py"
run "cd '$SRC' && $PIP install -r \$( [ -f requirements/build/cuda.txt ] && echo requirements/build/cuda.txt || echo requirements/build.txt )"
# 4. Compile for Volta and Turing only (the two archs vllm-sm7x serves), against that torch.
run "cd '$SRC' && CUDA_HOME='$CUDA_HOME' TORCH_CUDA_ARCH_LIST='7.0;7.5' VLLM_TARGET_DEVICE=cuda MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP install --no-build-isolation -v ."
# 5. What the doctor should now report: torch with sm_70, vLLM kernels with sm_70.
run "python3 -c \"import torch, vllm; print(torch.__version__, torch.cuda.get_arch_list(), vllm.__version__)\""
run "vllm-sm7x doctor"
