"""The stock vLLM AWQ baselines of benchmarks/awq_baselines.py against a float64 reference of the AWQ weights."""
import pytest
import torch

from vllm_sm7x.quantization.awq_format import dequantize_awq, quantize_awq

pytestmark = pytest.mark.gpu
# N=520: not a multiple of the Triton kernel's 32-column block (masked edge); vLLM's CUDA op needs N % 64 == 0
# and N % group_size == 0, so it reports itself unrunnable there. 576/64 takes that op's 64-column kernel.
SHAPES = [(1024, 520, 128), (1024, 640, 128), (1024, 576, 64)]
# 257 >= 256: vLLM's AWQ method switches to dequantise + torch.matmul. Marlin pads N=520 to its tiles.
M_VALUES = (1, 3, 17, 257)
# fp16 accumulation (Triton's accumulator is c_ptr's fp16) over K=1024 lands near 3e-3.
TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def baselines(awq_baselines):
    return awq_baselines


@pytest.mark.parametrize("emulate", ["sm70", "sm75"])
@pytest.mark.parametrize("K, N, group_size", SHAPES)
@pytest.mark.parametrize("baseline", ["vllm_awq_cuda", "vllm_marlin", "triton_awq_native", "triton_awq_faithful"])
def test_baseline_matches_reference(baselines, emulate, K, N, group_size, baseline, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    qweight, qzeros, scales = quantize_awq(torch.randn(K, N, device="cuda", generator=gen) * 0.05, group_size)
    reference = dequantize_awq(qweight, qzeros, scales, group_size)  # [K, N] float64
    fns, notes = baselines.stock_baselines(qweight, qzeros, scales, group_size, emulate)
    name = f"triton_awq_faithful_{emulate}" if baseline == "triton_awq_faithful" else baseline
    assert name in fns or name in notes
    if baseline == "vllm_marlin" and emulate == "sm75":  # what a T4 runs: it must build, not skip
        assert name in fns, notes[name]
    if name not in fns:
        pytest.skip(f"{name}: {notes[name]}")
    if baseline == "triton_awq_faithful":
        assert f"sm_{baselines.EMULATED_ARCH[emulate]}, no mma" in notes[name]
    for M in M_VALUES:
        x = torch.randn(M, K, device="cuda", generator=gen).half()
        out = fns[name](x)
        torch.cuda.synchronize()
        assert out.shape == (M, N) and out.dtype == torch.float16
        assert not out.isnan().any()
        ref = x.double() @ reference
        error = float((out.double() - ref).norm() / ref.norm())
        assert error < TOLERANCE, f"M={M}: relative error {error:.2e}"
