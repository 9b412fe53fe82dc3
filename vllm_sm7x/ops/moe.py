"""Mixture-of-experts routing on SM70/SM75 without vLLM's _moe_C (no sm_70 code there):
csrc/moe/moe_routing.h. `topk_softmax` takes the arguments and gives the outputs of vLLM's;
`sort_rows` groups the routed rows by expert for the grouped expert GEMM."""
from __future__ import annotations

import torch

from vllm_sm7x.ops import load_kernels

load_kernels()


def topk_softmax(gating_output: torch.Tensor, topk: int, renormalize: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gating_output [tokens, experts] (fp16/bf16/fp32 logits) -> (weights fp32 [tokens, topk]: softmax
    probabilities of the chosen experts, renormalised over them if asked; ids int32 [tokens, topk], most
    probable first, lower index first on ties; token_expert_indices int32 [tokens, topk] = j * tokens + t)."""
    tokens = gating_output.shape[0]
    weights = torch.empty(tokens, topk, dtype=torch.float32, device=gating_output.device)
    ids = torch.empty(tokens, topk, dtype=torch.int32, device=gating_output.device)
    token_expert_indices = torch.empty(tokens, topk, dtype=torch.int32, device=gating_output.device)
    torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert_indices, gating_output, renormalize)
    return weights, ids, token_expert_indices


def sort_rows(topk_ids: torch.Tensor, num_experts: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """topk_ids int32 [tokens, k] -> (offsets [E+1], sorted_rows [tokens*k], active_experts [E],
    active_count [1]), all int32 on the GPU with fixed sizes: expert e's rows (row = token * k + slot)
    are sorted_rows[offsets[e]:offsets[e+1]] in any order; ids outside [0, E) are dropped and the tail
    is -1; active_experts lists the experts with rows ascending, then -1."""
    offsets, sorted_rows, active_experts, active_count = torch.ops._C_sm7x.moe_sort_rows(topk_ids, num_experts)
    return offsets, sorted_rows, active_experts, active_count
