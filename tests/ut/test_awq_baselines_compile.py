"""The faithful Triton baseline on the CPU: vLLM's awq_gemm_kernel, specialised on the arguments vLLM's own
awq_gemm_triton passes, compiled for sm_70/sm_75 (no mma) and sm_80 (mma, the control); its PTX assembles
for an H100 (sm_90a) without tensor-core instructions. Compile-to-PTX/cubin needs no GPU or driver."""
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed")

K, N, GROUP, SPLIT_K = 1024, 520, 128, 8


@pytest.fixture(scope="module")
def baselines(awq_baselines):
    return awq_baselines


@pytest.fixture(scope="module")
def awq_triton(baselines):
    return baselines.vllm_awq_triton()


def compile_through_vllm(baselines, awq_triton, arch, no_mma=True):
    """Run vLLM's awq_gemm_triton on CPU tensors with the kernel swapped for a compile-only EmulatedKernel;
    M=1 (specialised to a constexpr) and M=3 are separate kernels, as under Triton's JIT."""
    # Only dtypes, shapes and alignment reach the compiler (AWQ GEMM format: int32 [K, N/8], [K/G, N/8], fp16).
    qweight, qzeros = torch.zeros(K, N // 8, dtype=torch.int32), torch.zeros(K // GROUP, N // 8, dtype=torch.int32)
    scales = torch.zeros(K // GROUP, N, dtype=torch.float16)
    kernel = baselines.EmulatedKernel(awq_triton.awq_gemm_kernel, arch, run_arch=None, no_mma=no_mma)
    for M in (1, 3):
        baselines.awq_gemm_triton_with(awq_triton, kernel)(torch.zeros(M, K).half(), qweight, scales, qzeros,
                                                           SPLIT_K)
    assert awq_triton.awq_gemm_kernel is not kernel  # vLLM's kernel is back in place
    assert len(kernel.kernels) == 2
    return list(kernel.kernels.values())


def sass_for_sm90(baselines, compiled):
    from triton.tools.disasm import get_sass

    return get_sass(baselines.assemble(compiled.asm["ptx"], compiled.metadata, 90))


def test_kernel_is_vllms_jit_function(awq_triton):
    from vllm.model_executor.layers.quantization import awq_triton as vllm_module

    assert isinstance(awq_triton.awq_gemm_kernel, triton.runtime.JITFunction)
    assert Path(awq_triton.__file__) == Path(vllm_module.__file__)


@pytest.mark.parametrize("arch", [70, 75])
def test_emulated_targets_emit_no_mma(baselines, awq_triton, arch):
    for compiled in compile_through_vllm(baselines, awq_triton, arch):
        ptx = compiled.asm["ptx"]
        assert f".target sm_{arch}" in ptx
        assert not baselines.MMA_PTX.search(ptx)
        assert "fma.rn.f16x2" in ptx  # tl.dot became FMAs (fp16 accumulator: c_ptr's element type)
        # What would run on the H100: the same code assembled for sm_90a, still without tensor cores.
        assert "HMMA" not in sass_for_sm90(baselines, compiled)


def test_sm80_control_emits_mma(baselines, awq_triton):
    for compiled in compile_through_vllm(baselines, awq_triton, 80, no_mma=False):
        assert ".target sm_80" in compiled.asm["ptx"]
        assert baselines.MMA_PTX.search(compiled.asm["ptx"])
        assert "HMMA" in sass_for_sm90(baselines, compiled)


def test_mma_check_fires_on_sm80(baselines, awq_triton):
    with pytest.raises(AssertionError, match="without mma"):
        compile_through_vllm(baselines, awq_triton, 80)
