"""tools/sass_counts.py: a kernel's own instructions are counted apart from the routines it calls, and
Volta's m8n8k4 is a tensor-core instruction on sm_70 but a called software routine on Hopper (the reason
the sm70 path's H200 figures are no V100 figures)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from check_volta_legality import missing_toolchain  # noqa: E402
from sass_counts import cubin, find_nvdisasm, parse_sass, sass  # noqa: E402

SNIPPET = """
        .section        .text._Z6kernelPf,"ax",@progbits
        .text._Z6kernelPf:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm_8x_mma_row_col_f32_f16_f16_f32) ;
        /*0020*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm_8x_mma_row_col_f32_f16_f16_f32) ;
        /*0030*/              @!P0 EXIT ;
$__internal_0_$__cuda_sm_8x_mma_row_col_f32_f16_f16_f32:
        /*0040*/                   FFMA R2, R3, R4, R2 ;
        /*0050*/                   FFMA R5, R3, R4, R5 ;
        /*0060*/                   RET.REL.NODEC R20 `(_Z6kernelPf) ;
"""

MMA_KERNEL = r"""
#include "core/mma_sm70.h"
__global__ void one_mma(float* out, const uint32_t* a, const uint32_t* b) {
  float d[8] = {};
  const uint32_t fa[2] = {a[2 * threadIdx.x], a[2 * threadIdx.x + 1]};
  const uint32_t fb[2] = {b[2 * threadIdx.x], b[2 * threadIdx.x + 1]};
  sm7x::sm70::mma_m8n8k4(d, fa, fb);
  for (int i = 0; i < 8; ++i) out[8 * threadIdx.x + i] = d[i];
}
"""


def test_a_called_routine_is_counted_once_apart_from_the_kernel():
    kernels, routines = parse_sass(SNIPPET)
    kernel = kernels["_Z6kernelPf"]
    assert kernel.opcodes == {"MOV": 1, "CALL": 2, "EXIT": 1}
    assert kernel.calls == {"$__internal_0_$__cuda_sm_8x_mma_row_col_f32_f16_f16_f32": 2}
    routine = routines["$__internal_0_$__cuda_sm_8x_mma_row_col_f32_f16_f16_f32"]
    assert routine.opcodes == {"FFMA": 2, "RET": 1} and routine.total == 3


@pytest.mark.skipif(missing_toolchain() is not None or find_nvdisasm() is None,
                    reason="needs nvcc, ptxas 12.8 (nvidia-cuda-nvcc-cu12) and nvdisasm")
def test_m8n8k4_is_a_tensor_core_instruction_on_volta_and_a_routine_on_hopper(tmp_path):
    source = tmp_path / "one_mma.cu"
    source.write_text(MMA_KERNEL)
    volta, _ = parse_sass(sass(cubin(source, "sm_70", tmp_path)))
    (volta_kernel,) = volta.values()
    assert volta_kernel.opcodes["HMMA"] == 4  # one m8n8k4 is four HMMA.884 steps on sm_70
    assert not volta_kernel.calls

    hopper, routines = parse_sass(sass(cubin(source, "sm_90", tmp_path)))
    (hopper_kernel,) = hopper.values()
    assert hopper_kernel.opcodes["HMMA"] == 0
    (routine,) = hopper_kernel.calls
    assert routines[routine].opcodes["FFMA"] >= 32  # 1024 multiply-adds over 32 lanes, on the FMA pipes
