"""Sends the Gated DeltaNet recurrence that vLLM's Qwen3.5/3.6 layer still runs on FLA's Triton kernel
(fused_sigmoid_gating_delta_rule_update) to our kernel: in steps that mix a prompt with running decodes or
MTP verifications, vLLM's `_forward_core` convolves every token, then peels the decodes (one token each)
and the verifications (1 + k tokens, from column num_accepted - 1 of their state blocks) off the prompt and
calls that kernel for them. Our layer class routes decode-only steps itself (vllm_sm7x/mamba/gdn.py).
See the index in vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

import logging

import torch

from vllm_sm7x import activation, envs

logger = logging.getLogger("vllm.sm7x")
K_DIMS = (64, 128, 256)  # csrc/gdn/gdn_decode.h
FIRST_CALL_MESSAGE = "vllm-sm7x: a mixed step's Gated DeltaNet recurrence runs on the sm7x kernel"


def takes(A_log, a, b, dt_bias, q, k, v, beta, threshold, initial_state, inplace_final_state, cu_seqlens,
          ssm_state_indices, num_accepted_tokens, use_qk_l2norm_in_kernel, is_kda) -> bool:
    """Whether our kernel serves this call: vLLM's continuous-batching form (states updated in place at
    ssm_state_indices, q/k l2-normalised in the kernel, the default softplus), fp16 activations, a state
    our kernel reads (fp32/fp16, 4-element aligned pages), and one token per sequence unless the call is an
    MTP verification (num_accepted_tokens)."""
    from vllm_sm7x.ops.gdn import recurrent_state_supported

    if is_kda or beta != 1.0 or threshold != 20.0 or not inplace_final_state or not use_qk_l2norm_in_kernel:
        return False
    if cu_seqlens is None or ssm_state_indices is None or initial_state is None or not q.is_cuda:
        return False
    if not (q.dtype == k.dtype == v.dtype == a.dtype == b.dtype == dt_bias.dtype == torch.float16
            and A_log.dtype == torch.float32 and recurrent_state_supported(initial_state)):
        return False
    if q.dim() != 4 or q.shape[0] != 1 or q.shape[-1] not in K_DIMS or v.shape[-1] % 32 or v.shape[2] % q.shape[2]:
        return False
    tokens, seqs = q.shape[1], cu_seqlens.numel() - 1
    if num_accepted_tokens is None:
        return ssm_state_indices.dim() == 1 and tokens == seqs and ssm_state_indices.numel() >= seqs
    return ssm_state_indices.dim() == 2 and ssm_state_indices.shape[0] >= seqs and num_accepted_tokens.numel() >= seqs


def sm7x_fused_sigmoid_gating(original):
    """fused_sigmoid_gating_delta_rule_update's signature on csrc/gdn's recurrent kernel where it takes the
    call, else `original`. Returns (o [1, tokens, v_heads, v_dim], the updated state), as vLLM's does."""

    def fused_sigmoid_gating_delta_rule_update(A_log, a, b, dt_bias, q, k, v, beta=1.0, threshold=20.0, scale=None,
                                               initial_state=None, inplace_final_state=True, cu_seqlens=None,
                                               ssm_state_indices=None, num_accepted_tokens=None,
                                               use_qk_l2norm_in_kernel=False, is_kda=False):
        if not takes(A_log, a, b, dt_bias, q, k, v, beta, threshold, initial_state, inplace_final_state, cu_seqlens,
                     ssm_state_indices, num_accepted_tokens, use_qk_l2norm_in_kernel, is_kda):
            return original(A_log, a, b, dt_bias, q, k, v, beta=beta, threshold=threshold, scale=scale,
                            initial_state=initial_state, inplace_final_state=inplace_final_state,
                            cu_seqlens=cu_seqlens, ssm_state_indices=ssm_state_indices,
                            num_accepted_tokens=num_accepted_tokens, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
                            is_kda=is_kda)
        if not fused_sigmoid_gating_delta_rule_update.sm7x_took_a_call:  # once per process: tests look for it
            fused_sigmoid_gating_delta_rule_update.sm7x_took_a_call = True
            logger.info(FIRST_CALL_MESSAGE)
        tokens, k_heads, k_dim = q.shape[1:]
        seqs = cu_seqlens.numel() - 1
        # The kernel reads one packed row per token (q, k, v of the layer's projection); these are a few
        # decode or verification tokens, so the copy is small.
        qkv = torch.cat([q.reshape(tokens, -1), k.reshape(tokens, -1), v.reshape(tokens, -1)], dim=1)
        out = v.new_empty(tokens, v.shape[2], v.shape[3])
        # vLLM's kernel reads a and b at the tokens' positions in the call: the first `tokens` rows.
        a, b = a[:tokens], b[:tokens]
        scale = k_dim ** -0.5 if scale is None else scale
        if num_accepted_tokens is None:  # one token per sequence: token n is sequence n
            torch.ops._C_sm7x.gdn_recurrent(qkv, a, b, A_log, dt_bias, scale, initial_state,
                                            ssm_state_indices[:seqs].int(), out, k_heads, None, None, False)
        else:
            torch.ops._C_sm7x.gdn_recurrent(qkv, a, b, A_log, dt_bias, scale, initial_state,
                                            ssm_state_indices[:seqs].int(), out, k_heads, cu_seqlens.int(),
                                            num_accepted_tokens[:seqs].int(), False)
        return out.unsqueeze(0), initial_state

    fused_sigmoid_gating_delta_rule_update.sm7x_original = original
    fused_sigmoid_gating_delta_rule_update.sm7x_took_a_call = False
    return fused_sigmoid_gating_delta_rule_update


def fused_sigmoid_gating_on_sm7x_kernel() -> bool:
    """With our GDN decode kernels on (VLLM_SM7X_GDN_DECODE, the default) on our platform, the GDN layer
    module's fused_sigmoid_gating_delta_rule_update becomes ours (falling back to vLLM's for calls it does
    not take). Returns True if it replaced it."""
    if not (activation.current_activation().active and envs.VLLM_SM7X_GDN_DECODE):
        return False
    from vllm.model_executor.layers.mamba.gdn import qwen_gdn_linear_attn as gdn_module

    if hasattr(gdn_module.fused_sigmoid_gating_delta_rule_update, "sm7x_original"):
        return False
    gdn_module.fused_sigmoid_gating_delta_rule_update = sm7x_fused_sigmoid_gating(
        gdn_module.fused_sigmoid_gating_delta_rule_update)
    return True
