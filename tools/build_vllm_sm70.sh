#!/usr/bin/env bash
# Build vLLM 0.26.0 with machine code for sm_70 (V100) against torch 2.11.0+cu126.
#
# Why: PyPI's vLLM wheels link CUDA 13 and carry sm_75+ code only, and torch dropped sm_70 from its
# CUDA 12.8+/13 builds; on a V100 the only working pair is torch 2.11.0+cu126 with a vLLM compiled
# from source for "7.0;7.5". The toolkit must be CUDA 12.0-12.7 (12.6 matches torch): vLLM 0.26's
# CMakeLists intersects the requested architectures with its supported list, which from nvcc 12.8 on
# lacks 7.0, so a 12.8 or 12.9 build has no sm_70 code at all (no error, only fewer architectures).
# The 12.6 toolkit installs beside a newer one. vllm-sm7x keeps the serving path off vLLM's kernels on
# SM70 where it can, but vLLM must still import and load its extension on that torch, and vLLM's custom
# all-reduce (tensor parallel) runs only from a library with sm_70 code.
#
#   bash tools/build_vllm_sm70.sh [--dry-run]
#   env: CUDA_HOME (default /usr/local/cuda-12.6), SRC (default ./vllm-src), MAX_JOBS (default: cores),
#        PIP (default: python3 -m pip; use the venv you serve from)
#
# Checked on the project's machines only as far as they allow (no V100, no CUDA 12 nvcc there):
# CI runs it with --dry-run and bash -n. The build itself takes 1-3 hours on 16 cores.
set -euo pipefail
VLLM_VERSION=0.26.0
TORCH_VERSION=2.11.0
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda-12.6}"
SRC="${SRC:-$PWD/vllm-src}"
PIP="${PIP:-python3 -m pip}"
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1

run() { echo "+ $*"; [ "$DRY_RUN" = 1 ] || eval "$@"; }

if [ "$DRY_RUN" = 0 ]; then
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "error: no nvcc in CUDA_HOME=$CUDA_HOME: install the CUDA 12.6 toolkit" >&2; exit 1; }
  "$CUDA_HOME/bin/nvcc" --version | grep -q "release 12\.[0-7]," || {
    echo "error: $CUDA_HOME is $("$CUDA_HOME/bin/nvcc" --version | grep -o 'release [0-9.]*'); vLLM 0.26 builds sm_70" \
         "code only with CUDA 12.0-12.7 (from 12.8 on its build drops 7.0, and CUDA 13 cannot compile for" \
         "sm_70): install the CUDA 12.6 toolkit beside it and set CUDA_HOME=/usr/local/cuda-12.6" >&2
    exit 1
  }
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
