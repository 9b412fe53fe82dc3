"""Qwen3.5/3.6 (and Qwen3-Next) Gated DeltaNet layers with our decode kernels.

vLLM runs these layers through Triton kernels, which on SM70/SM75 get no tensor cores and, for decode,
hold a 32 x 128 fp32 state tile per single-warp program. The layer class is a PluggableLayer, so an
out-of-tree subclass replaces it at construction. It sends two kinds of batch to csrc/gdn's conv
update + recurrence: pure decode (one token per sequence) and pure MTP verification (1 + k tokens per
sequence). Batches with prefill tokens, and layers whose dtypes the kernels do not take, keep vLLM's
path. On by default (VLLM_SM7X_GDN_DECODE=0 turns it off): the hybrid checkpoint matched stock vLLM end to
end on both arch paths with it, and MTP accepted as many drafts as on vLLM's kernels.

Prefill goes through vLLM's ChunkGatedDeltaRule op (a CustomOp): its out-of-tree subclass runs our
chunked SIMT kernel where it takes the inputs (fp16, k_dim 64 or 128); vLLM's layer only ever passes it
final states (prefix caching's align mode stores those), which is all the kernel returns. On by default
(VLLM_SM7X_GDN_PREFILL=0 turns it off) since the hybrid checkpoint matched stock vLLM end to end on both
arch paths with it. The prefill's causal conv1d goes to our kernel with VLLM_SM7X_GDN_CONV_PREFILL=1
(vllm_sm7x/patch/gdn_conv_prefill.py)."""
from __future__ import annotations

import logging

import torch

logger = logging.getLogger("vllm.sm7x")


def _register_once(base, make_subclass, message: str) -> bool:
    """Registers make_subclass(base) as vLLM's out-of-tree replacement of base, once (the registry is
    process-global); True if it did now."""
    from vllm.model_executor.custom_op import op_registry_oot

    if base.__name__ in op_registry_oot:
        return False
    base.register_oot(make_subclass(base))
    logger.info(message)
    return True


def register_gdn_decode() -> bool:
    """The layer subclass that sends decode and MTP-verification batches to our kernels."""
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    return _register_once(QwenGatedDeltaNetAttention, _sm7x_layer_class,
                          "vllm-sm7x: Gated DeltaNet decode and MTP verification run on the sm7x CUDA kernels")


def _sm7x_layer_class(base):
    class Sm7xQwenGatedDeltaNetAttention(base):
        def _sm7x_states(self):
            """(conv_state as [blocks, dim, width-1], ssm_state, conv weight [dim, width], k-heads on this
            GPU), or None where the kernels do not apply: another activation, state dtypes other than
            an fp16 conv state and an fp32/fp16 recurrent state (--mamba-cache-dtype), or state pages
            not aligned to the kernel's 4-element vectors."""
            from vllm.model_executor.layers.mamba.mamba_utils import is_conv_state_dim_first

            from vllm_sm7x.ops.gdn import recurrent_state_supported

            conv_state, ssm_state = self.kv_cache
            if (self.activation != "silu" or conv_state.dtype != torch.float16
                    or not recurrent_state_supported(ssm_state)):
                return None
            if not is_conv_state_dim_first():
                conv_state = conv_state.transpose(-1, -2)
            weight = self.conv1d.weight.view(self.conv1d.weight.size(0), self.conv1d.weight.size(2))
            # Heads on this GPU, from the shapes (the layer may keep TP off for some quantizations).
            v_heads, v_dim, k_dim = ssm_state.shape[1:]
            k_heads = (weight.shape[0] - v_heads * v_dim) // (2 * k_dim)
            return conv_state, ssm_state, weight, k_heads

        def _forward_core(self, mixed_qkv, b, a, core_attn_out):
            from vllm.forward_context import get_forward_context

            metadata = get_forward_context().attn_metadata
            metadata = metadata[self.prefix] if isinstance(metadata, dict) else None
            decode_only = metadata is not None and metadata.num_prefills == 0
            spec_only = decode_only and metadata.spec_sequence_masks is not None and metadata.num_decodes == 0
            # Plain decode is decided here, not through vLLM's packed-decode branch, which
            # VLLM_ENABLE_FLA_PACKED_RECURRENT_DECODE=0 turns off (our kernels would then be skipped silently).
            plain_decode = decode_only and metadata.spec_sequence_masks is None and metadata.num_decodes > 0
            # Only these batches look at the cache: the profile run has no metadata and no cache yet.
            states = self._sm7x_states() if spec_only or plain_decode else None
            if states is None:
                return base._forward_core(self, mixed_qkv, b, a, core_attn_out)
            from vllm_sm7x.ops.gdn import gdn_decode, gdn_verify

            conv_state, ssm_state, weight, k_heads = states
            if plain_decode:
                tokens = metadata.num_actual_tokens
                gdn_decode(mixed_qkv[:tokens], a[:tokens], b[:tokens], conv_state, weight, self.conv1d.bias,
                           self.A_log, self.dt_bias, ssm_state, metadata.non_spec_state_indices_tensor[:tokens],
                           core_attn_out[:tokens], k_heads, self.head_k_dim ** -0.5)
                return
            seqs, tokens = metadata.num_spec_decodes, metadata.num_actual_tokens
            gdn_verify(mixed_qkv[:tokens], a[:tokens], b[:tokens], conv_state, weight, self.conv1d.bias, self.A_log,
                       self.dt_bias, ssm_state, metadata.spec_state_indices_tensor[:seqs],
                       metadata.num_accepted_tokens[:seqs].to(torch.int32),
                       metadata.spec_query_start_loc[:seqs + 1].to(torch.int32), core_attn_out[:tokens], k_heads,
                       self.head_k_dim ** -0.5)


    return Sm7xQwenGatedDeltaNetAttention


def register_gdn_prefill() -> bool:
    """The ChunkGatedDeltaRule subclass that sends prefill to our chunked kernel."""
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import ChunkGatedDeltaRule

    return _register_once(ChunkGatedDeltaRule, _sm7x_chunk_rule_class,
                          "vllm-sm7x: Gated DeltaNet prefill runs on the sm7x chunked CUDA kernel")


def _sm7x_chunk_rule_class(base):
    class Sm7xChunkGatedDeltaRule(base):
        """vLLM picks FLA's Triton kernel on these GPUs (FlashInfer and CuTe DSL need newer ones); this
        takes that place for the inputs our kernel serves and hands the rest to it."""

        def __init__(self) -> None:
            super().__init__()
            if self._forward_method == self.forward_native:
                self._forward_method = self.forward_sm7x

        def forward_sm7x(self, q, k, v, g, beta, initial_state, output_final_state, cu_seqlens=None,
                         chunk_indices=None, chunk_offsets=None, use_qk_l2norm_in_kernel=True, core_attn_out=None):
            from vllm_sm7x.ops.gdn import chunk_gated_delta_rule, chunk_prefill_supports

            if not chunk_prefill_supports(q, v, initial_state):
                return self.forward_native(q, k, v, g, beta, initial_state, output_final_state, cu_seqlens,
                                           chunk_indices, chunk_offsets, use_qk_l2norm_in_kernel, core_attn_out)
            o, final_state = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=initial_state,
                                                    cu_seqlens=cu_seqlens,
                                                    use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel)
            if core_attn_out is not None:  # the caller's buffer, as vLLM's FlashInfer path fills it
                core_attn_out.reshape(-1)[:o.numel()].copy_(o.reshape(-1))
            return o, final_state if output_final_state else None

    return Sm7xChunkGatedDeltaRule
