"""Sends the causal conv1d of Gated DeltaNet prefill (vLLM's Triton causal_conv1d_fn, as the Qwen3.5/3.6
layer module calls it) to our kernel, with VLLM_SM7X_GDN_CONV_PREFILL=1. See the index in
vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

import torch

from vllm_sm7x import activation, envs

MAX_WIDTH = 8  # csrc/gdn/gdn_conv_prefill.h
ACTIVATIONS = {None: False, "silu": True, "swish": True, True: True}


def takes(x: torch.Tensor, weight: torch.Tensor, conv_states: torch.Tensor, activation_name, prefix_caching) -> bool:
    """Whether our kernel serves this call: fp16 tensors on the GPU, a width it holds, and no prefix-caching
    block bookkeeping (the Mamba-style `block_idx_*` arguments; Qwen's GDN layers pass none)."""
    return (x.is_cuda and x.dim() == 2 and x.dtype == weight.dtype == conv_states.dtype == torch.float16
            and weight.dim() == 2 and weight.shape[1] <= MAX_WIDTH and activation_name in ACTIVATIONS
            and not prefix_caching)


def sm7x_causal_conv1d_fn(original):
    """causal_conv1d_fn's signature on csrc/gdn/gdn_conv_prefill.cu where it takes the call, else `original`."""
    from vllm.v1.attention.backends.utils import NULL_BLOCK_ID, PAD_SLOT_ID

    def causal_conv1d_fn(x, weight, bias, conv_states, query_start_loc, cache_indices=None, has_initial_state=None,
                         activation="silu", pad_slot_id=PAD_SLOT_ID, null_block_id=NULL_BLOCK_ID,
                         block_idx_first_scheduled_token=None, block_idx_last_scheduled_token=None,
                         initial_state_idx=None, num_computed_tokens=None, block_size_to_align=0, metadata=None,
                         validate_data=False):
        prefix_caching = any(t is not None for t in (block_idx_first_scheduled_token, block_idx_last_scheduled_token,
                                                      initial_state_idx, num_computed_tokens))
        if not takes(x, weight, conv_states, activation, prefix_caching):
            return original(x, weight, bias, conv_states, query_start_loc, cache_indices=cache_indices,
                            has_initial_state=has_initial_state, activation=activation, pad_slot_id=pad_slot_id,
                            null_block_id=null_block_id,
                            block_idx_first_scheduled_token=block_idx_first_scheduled_token,
                            block_idx_last_scheduled_token=block_idx_last_scheduled_token,
                            initial_state_idx=initial_state_idx, num_computed_tokens=num_computed_tokens,
                            block_size_to_align=block_size_to_align, metadata=metadata, validate_data=validate_data)
        return torch.ops._C_sm7x.gdn_conv_prefill(
            x, weight.contiguous(), bias, conv_states, query_start_loc.int(),
            None if cache_indices is None else cache_indices.int(),
            None if has_initial_state is None else has_initial_state.bool(), ACTIVATIONS[activation], pad_slot_id,
            pad_slot_id if null_block_id is None else null_block_id)

    causal_conv1d_fn.sm7x_original = original
    return causal_conv1d_fn


def causal_conv1d_fn_on_sm7x_kernel() -> bool:
    """With VLLM_SM7X_GDN_CONV_PREFILL=1 on our platform, the GDN layer module's causal_conv1d_fn becomes ours
    (falling back to vLLM's for calls it does not take). Returns True if it replaced it."""
    if not (activation.current_activation().active and envs.VLLM_SM7X_GDN_CONV_PREFILL):
        return False
    from vllm.model_executor.layers.mamba.gdn import qwen_gdn_linear_attn as gdn_module

    if hasattr(gdn_module.causal_conv1d_fn, "sm7x_original"):
        return False
    gdn_module.causal_conv1d_fn = sm7x_causal_conv1d_fn(gdn_module.causal_conv1d_fn)
    return True
