// Torch-facing entry points of vllm_sm7x._C (schemas in torch_bindings.cpp).
#pragma once
#include <torch/all.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace sm7x {

// JSON: the archs this binary was compiled for and the arch paths it carries.
std::string build_info();

// out[M, N] (fp32) = a[M, K] (fp16) * b[N, K]^T through the mma.sync wrapper of `path`.
void mma_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out, const std::string& path);

// AWQ W4A16, weights in the packed layout of csrc/quantization/awq/awq_gemm.h. awq_gemm always runs
// the fused kernel (warps / split_k / column_tiles > 0 override the planned ones), awq_gemm_tiled the
// tiled one (token_tiles / warps / split_k likewise); awq_linear picks the fused kernel, the tiled one
// or dequantise + cuBLAS by rows; awq_plan shows the choice:
// [token_tiles, warps, splits, kernel (0 fused, 1 dequantise + cuBLAS, 2 tiled), column_tiles];
// awq_fused_registry, awq_grouped_registry and awq_tiled_registry list the fused, grouped (MoE) and
// tiled kernels' instantiations as (token_tiles, warps, column_tiles) triples, flattened.
torch::Tensor awq_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                       int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                       int64_t warps, int64_t split_k, int64_t column_tiles);
torch::Tensor awq_gemm_tiled(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                             int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                             int64_t token_tiles, int64_t warps, int64_t split_k);
torch::Tensor awq_linear(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                         int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path);
torch::Tensor awq_dequantize(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size);
std::vector<int64_t> awq_plan(int64_t M, int64_t N, int64_t K, int64_t group_size, const std::string& path,
                              int64_t device);
std::vector<int64_t> awq_fused_registry();
std::vector<int64_t> awq_grouped_registry();
std::vector<int64_t> awq_tiled_registry();
// Which kernel awq_linear runs M rows on: 0 fused, 1 dequantise + cuBLAS, 2 tiled (awq_plan's codes).
int64_t awq_linear_kernel(int64_t M);
// How many 8-token tiles per CTA the fused kernel uses for M rows (the tuner times those entries).
int64_t awq_token_tiles(int64_t M);
// What the cost model knows of this GPU for `path`'s kernels: [sms, bytes_per_us, sm_mhz, then CTAs per
// SM of each awq_fused_registry entry] (awq_plan_model's inputs: benchmarks record it).
std::vector<double> awq_device_model(const std::string& path, int64_t device);
// The fused kernel's cost model alone on a described GPU (no GPU needed: CPU tests), in awq_plan's form.
std::vector<int64_t> awq_plan_model(int64_t M, int64_t N, int64_t K, int64_t group_size, int64_t sms,
                                    double bytes_per_us, double sm_mhz, std::vector<int64_t> ctas_per_sm);
// The tiled kernel's plan on a described GPU (ctas_per_sm: one per awq_tiled_registry entry), likewise.
std::vector<int64_t> awq_plan_tiled_model(int64_t M, int64_t N, int64_t K, int64_t group_size, int64_t sms,
                                          double bytes_per_us, double sm_mhz, std::vector<int64_t> ctas_per_sm);
// Measured choices (vllm_sm7x/quantization/awq_tuning.py) that override the cost model.
void awq_set_tuned(int64_t N, int64_t K, int64_t group_size, const std::string& path, int64_t m_bucket,
                   int64_t warps, int64_t split_k, int64_t column_tiles);
void awq_clear_tuned();

// Gated DeltaNet decode and MTP verification (csrc/gdn/gdn_decode.h): the causal conv1d step over
// each sequence's tokens (x overwritten with the output, conv_state shifted in place) and the
// delta-rule recurrence (states read and saved in place, out [tokens, v_heads, v_dim] written).
void gdn_conv_update(torch::Tensor& x, torch::Tensor& conv_state, const torch::Tensor& weight,
                     const std::optional<torch::Tensor>& bias, const torch::Tensor& state_indices, bool silu,
                     const std::optional<torch::Tensor>& cu_seqlens, const std::optional<torch::Tensor>& num_accepted);
// Causal conv1d over whole prompts (csrc/gdn/gdn_conv_prefill.h), vLLM's causal_conv1d_fn for fp16: returns
// out with x's shape and strides; conv_state[cache_indices[n]] becomes each sequence's last inputs.
torch::Tensor gdn_conv_prefill(const torch::Tensor& x, const torch::Tensor& weight,
                               const std::optional<torch::Tensor>& bias, torch::Tensor& conv_state,
                               const torch::Tensor& query_start_loc, const std::optional<torch::Tensor>& cache_indices,
                               const std::optional<torch::Tensor>& has_initial_state, bool silu, int64_t pad_slot_id,
                               int64_t null_block_id);
void gdn_recurrent(const torch::Tensor& qkv, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& a_log, const torch::Tensor& dt_bias, double scale, torch::Tensor& state,
                   const torch::Tensor& state_indices, torch::Tensor& out, int64_t k_heads,
                   const std::optional<torch::Tensor>& cu_seqlens, const std::optional<torch::Tensor>& num_accepted,
                   bool round_beta);

// Gated DeltaNet chunked prefill (csrc/gdn/gdn_prefill.h), vLLM's chunk_gated_delta_rule for fp16 q/k/v:
// (out [tokens, v_heads, v_dim], final_state [seqs, v_heads, v_dim, k_dim] fp32).
std::tuple<torch::Tensor, torch::Tensor> gdn_chunk_prefill(const torch::Tensor& q, const torch::Tensor& k,
                                                         const torch::Tensor& v, const torch::Tensor& g,
                                                         const torch::Tensor& beta, double scale,
                                                         const std::optional<torch::Tensor>& initial_state,
                                                         const torch::Tensor& cu_seqlens);

// MoE routing (csrc/moe/moe_routing.h): vLLM's topk_softmax (same arguments and outputs) without _moe_C.
void moe_topk_softmax(torch::Tensor& topk_weights, torch::Tensor& topk_ids, torch::Tensor& token_expert_indices,
                      const torch::Tensor& gating_output, bool renormalize);
// The routed rows grouped by expert and the grouped GEMM's CTA rows, in one launch:
// [offsets [E+1], sorted_rows [rows], tile_expert, tile_row (each [expert_tiles_bound(...)])].
std::vector<torch::Tensor> moe_sort_rows(const torch::Tensor& topk_ids, int64_t num_experts, int64_t rows_per_tile);
// The routed experts' weighted sum per token (down [tokens * k, H] -> [tokens, H]), other ranks' ids skipped.
torch::Tensor moe_combine(const torch::Tensor& down, const torch::Tensor& topk_weights, const torch::Tensor& topk_ids,
                          int64_t num_experts);
// silu(gate) * up of a gate/up projection [rows, 2I] -> [rows, I].
torch::Tensor moe_silu_mul(const torch::Tensor& gate_up);
// The AWQ expert layer for a few tokens in two launches, no row sort (csrc/moe/awq_moe_decode.h):
// x [tokens, H] -> [tokens, H] = sum over slots of weight * down(silu(gate) * up)(x).
torch::Tensor awq_moe_decode(const torch::Tensor& x, const torch::Tensor& w13_qweight,
                             const torch::Tensor& w13_scale_zero, const torch::Tensor& w2_qweight,
                             const torch::Tensor& w2_scale_zero, const torch::Tensor& topk_weights,
                             const torch::Tensor& topk_ids, int64_t group_size);
// The same layer routing from the router logits [tokens, E] in its first launch (no routing launch):
// returns {out, topk_weights fp32 [tokens, top_k], topk_ids int32}, the picks moe_topk_softmax makes.
std::vector<torch::Tensor> awq_moe_decode_routed(const torch::Tensor& x, const torch::Tensor& w13_qweight,
                                                 const torch::Tensor& w13_scale_zero, const torch::Tensor& w2_qweight,
                                                 const torch::Tensor& w2_scale_zero,
                                                 const torch::Tensor& router_logits, int64_t top_k, bool renormalize,
                                                 int64_t group_size);
// AWQ experts (stacked packed weights [E, ...]) over routed rows: out[r] = x[r / x_row_divisor] W_e for
// each routed row r of expert e (rows of dropped expert ids are not written).
torch::Tensor awq_moe_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                           const torch::Tensor& sorted_rows, const torch::Tensor& offsets,
                           const torch::Tensor& tile_expert, const torch::Tensor& tile_row, int64_t x_row_divisor,
                           int64_t group_size, int64_t rows_per_tile, const std::string& path,
                           int64_t column_tiles);

}  // namespace sm7x
