"""Fake (meta) implementations of every torch.ops._C_sm7x op, in one place, so torch.compile and
CUDA-graph capture can trace them. Imported once by vllm_sm7x.ops.load_kernels."""
import torch


@torch.library.register_fake("_C_sm7x::mma_gemm")
def _mma_gemm_fake(a, b, out, path) -> None:
    return None


@torch.library.register_fake("_C_sm7x::awq_gemm")
def _awq_gemm_fake(x, qweight, scale_zero, group_size, bias, path, warps, split_k, column_tiles=0):
    return x.new_empty((x.shape[0], scale_zero.shape[1]))


@torch.library.register_fake("_C_sm7x::awq_gemm_tiled")
def _awq_gemm_tiled_fake(x, qweight, scale_zero, group_size, bias, path, token_tiles, warps, split_k):
    return x.new_empty((x.shape[0], scale_zero.shape[1]))


@torch.library.register_fake("_C_sm7x::awq_linear")
def _awq_linear_fake(x, qweight, scale_zero, group_size, bias, path):
    return x.new_empty((x.shape[0], scale_zero.shape[1]))


@torch.library.register_fake("_C_sm7x::awq_dequantize")
def _awq_dequantize_fake(qweight, scale_zero, group_size):
    return qweight.new_empty((scale_zero.shape[1], scale_zero.shape[0] * group_size), dtype=torch.float16)


@torch.library.register_fake("_C_sm7x::gdn_conv_update")
def _gdn_conv_update_fake(x, conv_state, weight, bias, state_indices, silu, cu_seqlens=None,
                          num_accepted=None) -> None:
    return None


@torch.library.register_fake("_C_sm7x::gdn_conv_prefill")
def _gdn_conv_prefill_fake(x, weight, bias, conv_state, query_start_loc, cache_indices, has_initial_state, silu,
                           pad_slot_id, null_block_id):
    return torch.empty_like(x)  # as the op allocates it: x's strides


@torch.library.register_fake("_C_sm7x::gdn_recurrent")
def _gdn_recurrent_fake(qkv, a, b, a_log, dt_bias, scale, state, state_indices, out, k_heads, cu_seqlens=None,
                        num_accepted=None, round_beta=False) -> None:
    return None


@torch.library.register_fake("_C_sm7x::gdn_chunk_prefill")
def _gdn_chunk_prefill_fake(q, k, v, g, beta, scale, initial_state, cu_seqlens):
    seqs, (tokens, v_heads, v_dim) = cu_seqlens.shape[0] - 1, v.shape
    return (v.new_empty((tokens, v_heads, v_dim)),
            v.new_empty((seqs, v_heads, v_dim, q.shape[2]), dtype=torch.float32))


@torch.library.register_fake("_C_sm7x::moe_topk_softmax")
def _moe_topk_softmax_fake(topk_weights, topk_ids, token_expert_indices, gating_output, renormalize) -> None:
    return None


@torch.library.register_fake("_C_sm7x::moe_sort_rows")
def _moe_sort_rows_fake(topk_ids, num_experts, rows_per_tile):
    rows = topk_ids.numel()
    tiles = rows // rows_per_tile + min(rows, num_experts)  # expert_tiles_bound in csrc/moe/moe_routing.h
    return [topk_ids.new_empty(num_experts + 1), topk_ids.new_empty(rows), topk_ids.new_empty(tiles),
            topk_ids.new_empty(tiles)]


@torch.library.register_fake("_C_sm7x::moe_combine")
def _moe_combine_fake(down, topk_weights, topk_ids, num_experts):
    return down.new_empty((topk_ids.shape[0], down.shape[1]))


@torch.library.register_fake("_C_sm7x::moe_silu_mul")
def _moe_silu_mul_fake(gate_up):
    return gate_up.new_empty((gate_up.shape[0], gate_up.shape[1] // 2))


@torch.library.register_fake("_C_sm7x::awq_moe_decode")
def _awq_moe_decode_fake(x, w13_qweight, w13_scale_zero, w2_qweight, w2_scale_zero, topk_weights, topk_ids,
                         group_size):
    return torch.empty_like(x)


@torch.library.register_fake("_C_sm7x::awq_moe_decode_routed")
def _awq_moe_decode_routed_fake(x, w13_qweight, w13_scale_zero, w2_qweight, w2_scale_zero, router_logits, top_k,
                                renormalize, group_size):
    tokens = x.shape[0]
    return [torch.empty_like(x), x.new_empty((tokens, top_k), dtype=torch.float32),
            x.new_empty((tokens, top_k), dtype=torch.int32)]


@torch.library.register_fake("_C_sm7x::awq_moe_gemm")
def _awq_moe_gemm_fake(x, qweight, scale_zero, sorted_rows, offsets, tile_expert, tile_row, x_row_divisor,
                       group_size, rows_per_tile, path, column_tiles=1):
    return x.new_empty((sorted_rows.shape[0], scale_zero.shape[2]))
