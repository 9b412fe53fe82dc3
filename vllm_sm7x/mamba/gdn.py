"""Qwen3.5/3.6 (and Qwen3-Next) Gated DeltaNet layers with our decode kernels.

vLLM runs these layers through Triton kernels, which on SM70/SM75 get no tensor cores and, for decode,
hold a 32 x 128 fp32 state tile per single-warp program. The layer class is a PluggableLayer, so an
out-of-tree subclass replaces it at construction; it overrides only the pure-decode step (one token
per sequence, no speculative tokens) with csrc/gdn's conv update + recurrence. Prefill, chunked
prefill and MTP verification stay on vLLM's kernels for now. Opt-in (VLLM_SM7X_GDN_DECODE=1) until the
kernels have run end to end on a GPU."""
from __future__ import annotations

import logging

import torch

logger = logging.getLogger("vllm.sm7x")


def register_gdn_decode() -> bool:
    """Registers the subclass once (vLLM's OOT registry is process-global); True if it did now."""
    from vllm.model_executor.custom_op import op_registry_oot
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    if QwenGatedDeltaNetAttention.__name__ in op_registry_oot:
        return False
    QwenGatedDeltaNetAttention.register_oot(_sm7x_layer_class(QwenGatedDeltaNetAttention))
    logger.info("vllm-sm7x: Gated DeltaNet decode runs on the sm7x CUDA kernels")
    return True


def _sm7x_layer_class(base):
    class Sm7xQwenGatedDeltaNetAttention(base):
        def _forward_core_decode_non_spec(self, mixed_qkv, b, a, core_attn_out, attn_metadata):
            conv_state, ssm_state = self.kv_cache
            # The kernels fuse SiLU and take an fp16 conv state (fp32/fp16 recurrent state); anything
            # else (another activation, --mamba-cache-dtype float32) keeps vLLM's path.
            if (self.activation != "silu" or conv_state.dtype != torch.float16
                    or ssm_state.dtype not in (torch.float32, torch.float16)):
                return super()._forward_core_decode_non_spec(mixed_qkv, b, a, core_attn_out, attn_metadata)
            from vllm.model_executor.layers.mamba.mamba_utils import is_conv_state_dim_first

            from vllm_sm7x.ops.gdn import gdn_decode

            if not is_conv_state_dim_first():
                conv_state = conv_state.transpose(-1, -2)  # the kernels take [blocks, dim, width - 1] views
            tokens = attn_metadata.num_actual_tokens
            weight = self.conv1d.weight.view(self.conv1d.weight.size(0), self.conv1d.weight.size(2))
            # Heads on this GPU, from the shapes (the layer may keep TP off for some quantizations).
            v_heads, v_dim, k_dim = ssm_state.shape[1:]
            k_heads = (mixed_qkv.shape[1] - v_heads * v_dim) // (2 * k_dim)
            gdn_decode(mixed_qkv[:tokens], a[:tokens], b[:tokens], conv_state, weight, self.conv1d.bias, self.A_log,
                       self.dt_bias, ssm_state, attn_metadata.non_spec_state_indices_tensor[:tokens],
                       core_attn_out[:tokens], k_heads, self.head_k_dim ** -0.5)

    return Sm7xQwenGatedDeltaNetAttention
