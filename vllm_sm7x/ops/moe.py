"""Mixture-of-experts routing on SM70/SM75 without vLLM's _moe_C (no sm_70 code there):
csrc/moe/moe_routing.h. `topk_softmax` takes the arguments and gives the outputs of vLLM's;
`sort_rows` groups the routed rows by expert and cuts each expert's rows into the grouped GEMM's CTA
rows, `awq_moe_gemm` runs one AWQ projection of every routed row in one launch, and `awq_moe` is a
whole SiLU-gated expert layer: for a few tokens two SIMT launches (csrc/moe/awq_moe_decode.h), else
five (sort, gate/up, SiLU gate, down, weighted sum), because at decode the layer's few microseconds
of weight reads are comparable to a launch. `awq_moe_routed` is the layer from the router logits: at
decode the first of its two launches also routes, so the router costs no launch of its own."""
from __future__ import annotations

import torch

from vllm_sm7x.activation import kernel_path
from vllm_sm7x.ops import load_kernels
from vllm_sm7x.quantization.awq_format import AwqKernelWeight

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


def sort_rows(topk_ids: torch.Tensor, num_experts: int, rows_per_tile: int
              ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """topk_ids int32 [tokens, k] -> (offsets [E+1], sorted_rows [tokens*k], (tile_expert, tile_row)),
    int32 on the GPU with fixed sizes (CUDA graphs), one launch. Expert e's rows (row = token * k + slot)
    are sorted_rows[offsets[e]:offsets[e+1]] in any order; ids outside [0, E) are dropped and the tail is
    -1. Tile i is rows_per_tile (a row count of grouped_tiles()) entries of sorted_rows from tile_row[i],
    all of expert tile_expert[i], in expert order; -1 experts past the last tile."""
    offsets, sorted_rows, tile_expert, tile_row = torch.ops._C_sm7x.moe_sort_rows(topk_ids, num_experts,
                                                                                rows_per_tile)
    return offsets, sorted_rows, (tile_expert, tile_row)


def grouped_tiles() -> list[tuple[int, int]]:
    """(rows per CTA, column tiles) of every grouped-kernel instantiation, as awq_moe's grouped_tile takes them."""
    from vllm_sm7x.ops.awq import grouped_registry

    return [(8 * e["token_tiles"], e["column_tiles"]) for e in grouped_registry()]


# From this many rows per expert the grouped GEMMs take the tiled kernel's grouped form. H200, sm75
# path, 35B-A3B widths (moe-grouped-configs-sm75-h200-2026-12-02-tiled.json): at 8 rows per expert it
# took 0.93x (TP1) / 0.71x (TP4) the best fused entry's time, at 16-256 rows 0.41-0.70x; at 4 rows
# 1.25x (TP1) / 0.91x (TP4), where 8-row fused tiles waste no mma rows on short experts.
TILED_MIN_ROWS_PER_EXPERT = 8


def grouped_tile_for(rows: int, active_experts: int) -> tuple[int, int]:
    """(rows per CTA, column tiles) of the grouped GEMMs: the fused kernel's 8-row tiles while experts
    see a few rows each (decode, MTP), else the tiled kernel's 32 rows x 8 column tiles, whose 8 warps
    share each x block. The fused 16-row entries stay in the registry for benchmarks/moe.py
    --grouped-configs on the real cards (the H200's ranking is not a T4's or a V100's)."""
    per_expert = rows / max(1, active_experts)
    return (32, 8) if per_expert >= TILED_MIN_ROWS_PER_EXPERT else (8, 1)


def awq_moe_gemm(x: torch.Tensor, experts: AwqKernelWeight, sorted_rows: torch.Tensor, offsets: torch.Tensor,
                 tiles: tuple[torch.Tensor, torch.Tensor], x_row_divisor: int, rows_per_tile: int,
                 path: str | None = None, column_tiles: int = 1) -> torch.Tensor:
    """One AWQ projection of every routed row, all experts in one launch: out [rows, N] fp16 with
    out[r] = x[r // x_row_divisor] @ W_e for routed row r (= token * topk + slot) of expert e.
    x holds tokens (x_row_divisor = topk, the gate/up projection) or routed rows (1, the down
    projection); experts comes from experts_to_kernel_layout; rows of dropped expert ids are not written.
    A CTA takes rows_per_tile rows (the tiles' size) and column_tiles x 16 columns: (8 or 16, 1 or 2) on the
    fused kernel, (32, 8) on the tiled kernel's grouped form (x shared by 8 warps)."""
    return torch.ops._C_sm7x.awq_moe_gemm(x, experts.qweight, experts.scale_zero, sorted_rows, offsets, tiles[0],
                                          tiles[1], x_row_divisor, experts.group_size, rows_per_tile,
                                          path or kernel_path(), column_tiles)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """fp16 [rows, 2I] (gate, then up) -> silu(gate) * up [rows, I], fp32 math and one rounding."""
    return torch.ops._C_sm7x.moe_silu_mul(gate_up)


def combine(down: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """down fp16 [tokens * k, H] (routed row = token * k + slot), weights fp32 and ids int32 [tokens, k]
    -> fp16 [tokens, H]: each token's weighted sum over its slots, fp32 sums; slots whose id is outside
    [0, num_experts) (other ranks' experts, rows never written) are skipped."""
    return torch.ops._C_sm7x.moe_combine(down, topk_weights, topk_ids, num_experts)


# Up to this many tokens the layer takes the two-launch SIMT path (awq_moe_decode: no row sort, each
# routed row reads its expert's columns); beyond, the grouped tensor-core GEMMs, which read each
# active expert once however many tokens share it. benchmarks/moe.py times both.
DECODE_MAX_TOKENS = 4


def awq_moe(x: torch.Tensor, w13: AwqKernelWeight, w2: AwqKernelWeight, topk_weights: torch.Tensor,
            topk_ids: torch.Tensor, path: str | None = None, decode_max_tokens: int = DECODE_MAX_TOKENS,
            grouped_tile: tuple[int, int] | None = None) -> torch.Tensor:
    """The routed experts of a Qwen MoE layer: out[t] = sum_k weight[t, k] * down(silu(gate) * up)(x[t])
    with expert topk_ids[t, k]. x [tokens, H] fp16; w13 [E] experts of H -> 2I (gate, then up), w2 [E] of
    I -> H (experts_to_kernel_layout); ids outside [0, E) (other ranks' experts) count as zero.
    grouped_tile: (rows_per_tile, column_tiles) of the grouped GEMMs instead of grouped_tile_for's
    choice (benchmarks/moe.py --grouped-configs times the registry's entries)."""
    ids = topk_ids.to(torch.int32).contiguous()
    weights = topk_weights.float().contiguous()
    tokens, topk = ids.shape
    if tokens <= decode_max_tokens:
        return torch.ops._C_sm7x.awq_moe_decode(x.contiguous(), w13.qweight, w13.scale_zero, w2.qweight,
                                                w2.scale_zero, weights, ids, w13.group_size)
    experts = w13.qweight.shape[0]
    rows = ids.numel()
    per_tile, column_tiles = grouped_tile or grouped_tile_for(rows, min(rows, experts))
    offsets, sorted_rows, tiles = sort_rows(ids, experts, per_tile)
    gate_up = awq_moe_gemm(x, w13, sorted_rows, offsets, tiles, topk, per_tile, path, column_tiles)
    down = awq_moe_gemm(silu_mul(gate_up), w2, sorted_rows, offsets, tiles, 1, per_tile, path, column_tiles)
    return combine(down, weights, ids, experts)


def awq_moe_routed(x: torch.Tensor, w13: AwqKernelWeight, w2: AwqKernelWeight, router_logits: torch.Tensor,
                   top_k: int, renormalize: bool, path: str | None = None,
                   decode_max_tokens: int = DECODE_MAX_TOKENS) -> torch.Tensor:
    """awq_moe with the routing of topk_softmax(router_logits [tokens, E], top_k, renormalize) and every
    expert on this rank. Up to decode_max_tokens tokens the decode layer's gate/up kernel picks the
    experts itself (the same picks and weights, bit for bit); beyond, the routing kernel runs first."""
    if x.shape[0] <= decode_max_tokens:
        out, _, _ = torch.ops._C_sm7x.awq_moe_decode_routed(x.contiguous(), w13.qweight, w13.scale_zero, w2.qweight,
                                                            w2.scale_zero, router_logits, top_k, renormalize,
                                                            w13.group_size)
        return out
    weights, ids, _ = topk_softmax(router_logits, top_k, renormalize)
    return awq_moe(x, w13, w2, weights, ids, path, decode_max_tokens)
