"""Routes vLLM's MoE top-k softmax to our kernel on the SM70 path, where `_moe_C` has no code. See
the index in vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

import torch

from vllm_sm7x import activation


def topk_softmax(topk_weights: torch.Tensor, topk_ids: torch.Tensor, token_expert_indices: torch.Tensor,
                 gating_output: torch.Tensor, renormalize: bool = False,
                 e_score_correction_bias: torch.Tensor | None = None) -> None:
    """vllm._custom_ops.topk_softmax's signature and outputs, on csrc/moe/moe_routing.cu."""
    if e_score_correction_bias is not None:
        raise NotImplementedError("MoE routing with a score correction bias is not supported on SM70 (Qwen MoE "
                                  "models route without one)")
    torch.ops._C_sm7x.moe_topk_softmax(topk_weights, topk_ids, token_expert_indices, gating_output, renormalize)


def topk_softmax_without_moe_c() -> bool:
    """On the SM70 path, replaces vllm._custom_ops.topk_softmax (every softmax router calls it through
    that module). Returns True if it replaced it."""
    import vllm._custom_ops as ops

    if activation.current_activation().path != "sm70" or ops.topk_softmax is topk_softmax:
        return False
    ops.topk_softmax = topk_softmax
    return True
