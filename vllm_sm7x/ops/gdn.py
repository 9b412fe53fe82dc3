"""Gated DeltaNet decode steps on SM70/SM75 (Qwen3.5/3.6 linear-attention layers) in vLLM's state
layouts (csrc/gdn/gdn_decode.h): one token per sequence, or MTP verification (1 + k draft tokens per
sequence, the state saved after each). Each replaces vLLM's Triton pair for that step: the conv
update, then the recurrence."""
from __future__ import annotations

import torch

from vllm_sm7x.ops import load_kernels

load_kernels()


def gdn_decode(qkv: torch.Tensor, a: torch.Tensor, b: torch.Tensor, conv_state: torch.Tensor,
               conv_weight: torch.Tensor, conv_bias: torch.Tensor | None, a_log: torch.Tensor, dt_bias: torch.Tensor,
               ssm_state: torch.Tensor, state_indices: torch.Tensor, out: torch.Tensor, k_heads: int,
               scale: float) -> None:
    """One token per sequence. qkv [tokens, 2*k_heads*k_dim + v_heads*v_dim] (convolved in place),
    a/b [tokens, v_heads], conv_state [blocks, dim, width-1] (any strides), conv_weight [dim, width],
    ssm_state [blocks, v_heads, v_dim, k_dim] (fp32 or fp16), state_indices int32 [tokens] (0: padding),
    out [tokens, v_heads, v_dim]. States are updated in place."""
    torch.ops._C_sm7x.gdn_conv_update(qkv, conv_state, conv_weight, conv_bias, state_indices, True)
    # vLLM's single-token kernel rounds beta to the activation dtype; so do we, to match it.
    torch.ops._C_sm7x.gdn_recurrent(qkv, a, b, a_log, dt_bias, scale, ssm_state, state_indices, out, k_heads,
                                    round_beta=True)


def gdn_verify(qkv: torch.Tensor, a: torch.Tensor, b: torch.Tensor, conv_state: torch.Tensor,
               conv_weight: torch.Tensor, conv_bias: torch.Tensor | None, a_log: torch.Tensor, dt_bias: torch.Tensor,
               ssm_state: torch.Tensor, state_indices: torch.Tensor, num_accepted: torch.Tensor,
               cu_seqlens: torch.Tensor, out: torch.Tensor, k_heads: int, scale: float) -> None:
    """MTP verification: sequence n is tokens cu_seqlens[n] .. cu_seqlens[n+1]-1 (1 + draft tokens).
    state_indices int32 [seqs, 1 + k]: column t receives the state after token t; the step starts
    from column num_accepted[n] - 1 (and the conv window from that position of the conv state)."""
    torch.ops._C_sm7x.gdn_conv_update(qkv, conv_state, conv_weight, conv_bias, state_indices, True, cu_seqlens,
                                      num_accepted)
    torch.ops._C_sm7x.gdn_recurrent(qkv, a, b, a_log, dt_bias, scale, ssm_state, state_indices, out, k_heads,
                                    cu_seqlens, num_accepted)
