"""Gated DeltaNet on SM70/SM75 (Qwen3.5/3.6 linear-attention layers) in vLLM's state layouts: decode
steps (csrc/gdn/gdn_decode.h: one token per sequence, or MTP verification, 1 + k draft tokens per
sequence with the state saved after each; each replaces vLLM's Triton pair for that step, the conv
update then the recurrence) and the chunked prefill (csrc/gdn/gdn_prefill.h: vLLM's
chunk_gated_delta_rule)."""
from __future__ import annotations

import torch

from vllm_sm7x.ops import load_kernels

load_kernels()


def recurrent_state_supported(state: torch.Tensor) -> bool:
    """Whether the recurrent kernel (gdn_recurrent) reads this state as vLLM's mamba cache holds it: fp32 or
    fp16, base and block stride multiples of its 4-element vector accesses."""
    if state.dtype not in (torch.float32, torch.float16):
        return False
    vector_bytes = 4 * state.element_size()
    return state.data_ptr() % vector_bytes == 0 and state.stride(0) * state.element_size() % vector_bytes == 0


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


PREFILL_K_DIMS = (64, 128)


def chunk_prefill_supports(q: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor | None) -> bool:
    """Whether gdn_chunk_prefill takes these inputs ([..., heads, head_dim]; the state as vLLM's mamba
    cache keeps it, e.g. bf16 under --mamba-ssm-cache-dtype); vLLM's kernel serves the rest."""
    return (q.dtype == torch.float16 and v.dtype == torch.float16 and q.shape[-1] in PREFILL_K_DIMS
            and v.shape[-1] > 0 and v.shape[-1] % 32 == 0
            and (initial_state is None or initial_state.dtype in (torch.float32, torch.float16)))


def _l2_normalized(x: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().sum(-1, keepdim=True) + 1e-6)).to(x.dtype)


def chunk_gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                           scale: float | None = None, initial_state: torch.Tensor | None = None,
                           cu_seqlens: torch.Tensor | None = None,
                           use_qk_l2norm_in_kernel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's (FLA's) chunk_gated_delta_rule on our kernel, same arguments: q, k [B, T, k_heads, k_dim] and
    v [B, T, v_heads, v_dim] fp16, g (log decay) and beta [B, T, v_heads]; with cu_seqlens [N + 1], B is 1
    and the N sequences lie end to end, else each of the B rows is a sequence. initial_state
    [N, v_heads, v_dim, k_dim] (None: zeros). Returns (o [B, T, v_heads, v_dim] fp16, final state fp32)."""
    batch, tokens = q.shape[:2]
    if cu_seqlens is None:
        cu_seqlens = torch.arange(batch + 1, dtype=torch.int32, device=q.device) * tokens
    if use_qk_l2norm_in_kernel:
        q, k = _l2_normalized(q), _l2_normalized(k)
    flat = [x.reshape(batch * tokens, *x.shape[2:]) for x in (q, k, v, g, beta)]
    q, k, v = (x if x.stride(1) == x.shape[2] and x.stride(2) == 1 else x.contiguous() for x in flat[:3])
    g, beta = (x.float() if x.stride(1) == 1 else x.float().contiguous() for x in flat[3:])
    out, final_state = torch.ops._C_sm7x.gdn_chunk_prefill(
        q, k, v, g, beta, scale if scale is not None else q.shape[-1] ** -0.5,
        None if initial_state is None else initial_state.contiguous(), cu_seqlens.int())
    return out.view(batch, tokens, *out.shape[1:]), final_state
