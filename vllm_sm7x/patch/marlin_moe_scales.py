"""Fixes the scale layout of vLLM 0.26's Marlin MoE for narrow experts. See the index in
vllm_sm7x/patch/__init__.py."""
from __future__ import annotations


def permute_for_each_gemms_k() -> bool:
    """vLLM's int_wna16 (the AWQ and GPTQ Marlin MoE weight preparation) permutes the gate/up scales
    with size_k = the expert width, while the gate/up GEMM's K is the hidden size; the Marlin kernel
    takes the grouped scale layout whenever a weight has more than one scale group. Where the expert
    width is at most the group size and the hidden size is larger (Qwen3.6-35B-A3B at TP4: 128-wide
    experts, group 128), the scales get the per-channel layout and the layer is silently wrong. The
    wrapper passes each call K = its scale groups x the group size (what the kernel assumes). Returns
    True if it replaced the function now."""
    from vllm.model_executor.layers.fused_moe.oracle import int_wna16

    permute = int_wna16.marlin_moe_permute_scales
    if getattr(permute, "sm7x_fixed", False):
        return False

    def marlin_moe_permute_scales(s, size_k, size_n, group_size, is_a_8bit=False):
        return permute(s, s.shape[1] * group_size if group_size > 0 else size_k, size_n, group_size, is_a_8bit)

    marlin_moe_permute_scales.sm7x_fixed = True
    int_wna16.marlin_moe_permute_scales = marlin_moe_permute_scales
    return True
