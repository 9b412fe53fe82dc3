"""The faithful GDN decode baseline on the CPU: vLLM's causal_conv1d_update and packed recurrent decode,
called as the GDN layer calls them, with their kernels compiled for sm_70/sm_75 (benchmarks/gdn.py runs
those builds on the H100). Compile-to-PTX needs no GPU."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gdn_benchmark():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("gdn_benchmark", BENCHMARKS / "gdn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", [70, 75])
def test_vllms_gdn_decode_kernels_compile_for_the_emulated_card(gdn_benchmark, arch):
    from triton_faithful import MMA_PTX, EmulatedKernel, swapped, with_real_triton
    from vllm.model_executor.layers.mamba.ops import causal_conv1d
    from vllm.third_party.flash_linear_attention.ops import fused_recurrent

    conv = with_real_triton(causal_conv1d, "_causal_conv1d_update_kernel")
    recurrent = with_real_triton(fused_recurrent, "fused_recurrent_gated_delta_rule_packed_decode_kernel")
    conv_kernel = EmulatedKernel(conv._causal_conv1d_update_kernel, arch, None)
    recurrent_kernel = EmulatedKernel(recurrent.fused_recurrent_gated_delta_rule_packed_decode_kernel, arch, None)
    v_heads, dim = 12, 2 * 4 * 128 + 12 * 128  # Qwen3.6-27B at TP4: 4 k-heads, 12 v-heads
    qkv = torch.zeros(2, dim, dtype=torch.float16)
    indices = torch.tensor([1, 2], dtype=torch.int32)
    with swapped(conv, _causal_conv1d_update_kernel=conv_kernel), \
            swapped(recurrent, fused_recurrent_gated_delta_rule_packed_decode_kernel=recurrent_kernel):
        x = conv.causal_conv1d_update(qkv, torch.zeros(3, 3, dim, dtype=torch.float16).transpose(-1, -2),
                                      torch.zeros(dim, 4, dtype=torch.float16), None, "silu",
                                      conv_state_indices=indices, validate_data=False)
        recurrent.fused_recurrent_gated_delta_rule_packed_decode(
            mixed_qkv=x, a=torch.zeros(2, v_heads, dtype=torch.float16), b=torch.zeros(2, v_heads, dtype=torch.float16),
            A_log=torch.zeros(v_heads), dt_bias=torch.zeros(v_heads, dtype=torch.float16), scale=128 ** -0.5,
            initial_state=torch.zeros(3, v_heads, 128, 128), out=torch.zeros(2, 1, v_heads, 128, dtype=torch.float16),
            ssm_state_indices=indices, use_qk_l2norm_in_kernel=True)
    compiled = [*conv_kernel.kernels.values(), *recurrent_kernel.kernels.values()]
    assert len(compiled) == 2
    for kernel in compiled:
        assert f".target sm_{arch}" in kernel.asm["ptx"] and not MMA_PTX.search(kernel.asm["ptx"])
