"""The MoE benchmark's baseline on the CPU: our conversion of AWQ experts to the layout of vLLM's int4
fused MoE kernel holds the same weights, and that Triton kernel, called as vLLM calls it, compiles for
sm_70/sm_75 without tensor-core instructions (benchmarks/moe.py runs those builds on the H100)."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def moe_benchmark():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("moe_benchmark", BENCHMARKS / "moe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wna16_layout_holds_the_awq_weights(moe_benchmark, seed):
    from vllm_sm7x.quantization.awq_format import dequantize_awq, quantize_awq

    K, N, G = 256, 48, 128
    qweight, qzeros, scales = quantize_awq(torch.randn(K, N, generator=torch.Generator().manual_seed(seed)), G)
    values, wscales, zeros = moe_benchmark.wna16_format(qweight, qzeros, scales)
    assert values.shape == (N, K // 2) and wscales.shape == (N, K // G) and zeros.shape == (N // 2, K // G)
    k, n = torch.arange(K), torch.arange(N)
    q = (values[:, k // 2].int() >> ((k % 2) * 4)) & 15                      # [N, K], as the kernel reads it
    z = (zeros[n // 2].int() >> ((n % 2) * 4)[:, None]) & 15                  # [N, K/G]
    weight = (q - z.repeat_interleave(G, 1)) * wscales.double().repeat_interleave(G, 1)
    torch.testing.assert_close(weight.t(), dequantize_awq(qweight, qzeros, scales, G))


@pytest.mark.parametrize("arch", [70, 75])
def test_vllms_int4_moe_kernel_compiles_for_the_emulated_card(moe_benchmark, arch):
    import triton.language as tl
    from triton_faithful import MMA_PTX, EmulatedKernel, swapped

    module = moe_benchmark.fused_moe_module()
    kernel = EmulatedKernel(module.fused_moe_kernel_gptq_awq, arch, None)
    experts, hidden, inter, topk, tokens, block_m = 8, 256, 128, 2, 3, 16
    sorted_ids = torch.arange(block_m * experts, dtype=torch.int32)
    with swapped(module, fused_moe_kernel_gptq_awq=kernel):
        module.invoke_fused_moe_wna16_triton_kernel(
            torch.zeros(tokens, hidden, dtype=torch.float16), torch.zeros(experts, 2 * inter, hidden // 2, dtype=torch.uint8),
            torch.zeros(tokens, topk, 2 * inter, dtype=torch.float16),
            torch.zeros(experts, 2 * inter, hidden // 128, dtype=torch.float16),
            torch.zeros(experts, inter, hidden // 128, dtype=torch.uint8), None, sorted_ids,
            torch.zeros(experts, dtype=torch.int32), torch.tensor([block_m * experts], dtype=torch.int32), False, topk,
            {"BLOCK_SIZE_M": block_m, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1, "SPLIT_K": 1},
            tl.float16, False, True, [0, 128])
    (compiled,) = kernel.kernels.values()
    assert f".target sm_{arch}" in compiled.asm["ptx"] and not MMA_PTX.search(compiled.asm["ptx"])
