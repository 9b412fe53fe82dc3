"""The faithful TRITON_ATTN baseline on the CPU: vLLM's unified_attention, called as its backend calls
it, with its kernels compiled for sm_70/sm_75 (no tensor-core instruction) and, as the control, sm_80
(mma). Compile-to-PTX needs no GPU."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def attention():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("attention_benchmark", BENCHMARKS / "attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compiled_kernels(attention, emulate_arch: int):
    """Decode (3D segmented: both kernels) and a 5-token MTP block (2D) at Qwen3.6-27B TP4's shape."""
    from triton_faithful import EmulatedKernel, swapped

    module = attention.unified_attention_module()
    kernels = {name: EmulatedKernel(getattr(module, name), emulate_arch, None, no_mma=emulate_arch < 80)
               for name in ("kernel_unified_attention", "reduce_segments")}
    kv = torch.zeros(4, 16, 1, 512, dtype=torch.float16)
    key_cache, value_cache = kv.split(256, dim=-1)
    for q_len in (1, 5):
        q = torch.zeros(q_len, 6, 256, dtype=torch.float16)
        kwargs = attention.triton_attn_kwargs(q, torch.tensor([0, q_len], dtype=torch.int32), q_len,
                                              torch.tensor([64], dtype=torch.int32), 64,
                                              torch.arange(4, dtype=torch.int32).view(1, 4), 0.0625, 1)
        with swapped(module, **kernels):
            module.unified_attention(k=key_cache, v=value_cache, **kwargs)
    return [c for kernel in kernels.values() for c in kernel.kernels.values()]


@pytest.mark.parametrize("arch", [70, 75])
def test_emulated_targets_emit_no_mma(attention, arch):
    from triton_faithful import MMA_PTX

    compiled = compiled_kernels(attention, arch)
    assert len(compiled) == 3  # 3D decode kernel + its reduction, 2D kernel
    for kernel in compiled:
        assert f".target sm_{arch}" in kernel.asm["ptx"] and not MMA_PTX.search(kernel.asm["ptx"])


def test_sm80_control_emits_mma(attention):
    from triton_faithful import MMA_PTX

    assert any(MMA_PTX.search(kernel.asm["ptx"]) for kernel in compiled_kernels(attention, 80))
