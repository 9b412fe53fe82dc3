"""Gated DeltaNet decode on SM70/SM75 (Qwen3.5/3.6 linear-attention layers): one new token per
sequence, vLLM's state layouts (csrc/gdn/gdn_decode.h). Replaces the Triton pair vLLM runs for a
decode batch without speculative tokens: causal_conv1d_update + the packed recurrent decode."""
from __future__ import annotations

import torch

from vllm_sm7x.ops import load_kernels

load_kernels()


def gdn_decode(qkv: torch.Tensor, a: torch.Tensor, b: torch.Tensor, conv_state: torch.Tensor,
               conv_weight: torch.Tensor, conv_bias: torch.Tensor | None, a_log: torch.Tensor, dt_bias: torch.Tensor,
               ssm_state: torch.Tensor, state_indices: torch.Tensor, out: torch.Tensor, k_heads: int,
               scale: float) -> None:
    """qkv [tokens, 2*k_heads*k_dim + v_heads*v_dim] (convolved in place), a/b [tokens, v_heads],
    conv_state [blocks, dim, width-1] (any strides), conv_weight [dim, width], ssm_state
    [blocks, v_heads, v_dim, k_dim] (fp32 or fp16), state_indices int32 [tokens] (0: padding),
    out [tokens, v_heads, v_dim]. States are updated in place."""
    torch.ops._C_sm7x.gdn_conv_update(qkv, conv_state, conv_weight, conv_bias, state_indices, True)
    torch.ops._C_sm7x.gdn_recurrent_decode(qkv, a, b, a_log, dt_bias, scale, ssm_state, state_indices, out, k_heads)
