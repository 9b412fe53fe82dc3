// Mixture-of-experts steps for SM70/SM75 other than the expert GEMM, without vLLM's _moe_C (which
// has no sm_70 code): the softmax top-k of vLLM's topk_softmax, with its arguments and outputs, so the
// MoE layer can call either (equal probabilities: the lower expert index first, deterministic and
// tested); the row sort with the GEMM's tile list; the SiLU gate; the weighted combine.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "quantization/awq/awq_registry.h"

namespace sm7x {

constexpr int kMaxRoutedExperts = 1024;  // experts per token the routing kernel scores (32 per lane)
constexpr int kMaxTopK = 32;             // experts chosen per token (one lane each)
constexpr int kMaxSortedRows = 1 << 20;  // routed rows (tokens x k) one sort call takes

struct TopkSoftmaxParams {
  const void* gating;        // [tokens, experts] router logits (row stride gating_stride), dtype below
  int64_t gating_stride;
  float* weights;            // [tokens, k]: softmax probability of each chosen expert (renormalised
                             // over the k when asked)
  int* ids;                  // [tokens, k]: chosen experts, largest logit (most probable) first;
                             // equal logits: lower expert index first
  int* token_expert;         // [tokens, k]: j * tokens + token (vLLM's token_expert_indices), or null
  int tokens, experts, k;
  bool renormalize;
};

enum class GatingDtype { kFloat16, kBFloat16, kFloat32 };

void launch_topk_softmax(const TopkSoftmaxParams& params, GatingDtype dtype, cudaStream_t stream);

// The routed rows grouped by expert and cut into the grouped expert GEMM's CTA rows, in one launch.
// Row r = token * k + slot of topk_ids. Fixed-size outputs (CUDA graphs): expert e's rows are
// sorted_rows[offsets[e] .. offsets[e+1]-1], in no particular order (each row's product is independent
// of the others); ids outside [0, experts) (expert-parallel masking) are left out and the tail of
// sorted_rows holds -1. Tile i covers rows_per_tile entries of sorted_rows from tile_row[i], all of
// expert tile_expert[i], in expert order; entries past the last tile have expert -1.
struct SortRowsParams {
  const int* topk_ids;  // [rows]
  int* offsets;         // [experts + 1]
  int* sorted_rows;     // [rows]
  int* tile_expert;     // [max_tiles]
  int* tile_row;        // [max_tiles]
  int rows, experts, rows_per_tile, max_tiles;
};

// CTA rows the grouped expert GEMMs are instantiated for (8 x token tiles of SM7X_AWQ_GROUPED_REGISTRY
// and SM7X_AWQ_GROUPED_TILED_REGISTRY): the row sort cuts tiles for them, so both take only these.
inline bool is_grouped_rows_per_tile(int64_t rows_per_tile) {
#define SM7X_GROUPED_ROWS_MATCH(token_tiles, warps, column_tiles) \
  if (rows_per_tile == 8 * (token_tiles)) return true;
#define SM7X_GROUPED_TILED_ROWS_MATCH(token_tiles, warps) SM7X_GROUPED_ROWS_MATCH(token_tiles, warps, warps)
  SM7X_AWQ_GROUPED_REGISTRY(SM7X_GROUPED_ROWS_MATCH)
  SM7X_AWQ_GROUPED_TILED_REGISTRY(SM7X_GROUPED_TILED_ROWS_MATCH)
#undef SM7X_GROUPED_TILED_ROWS_MATCH
#undef SM7X_GROUPED_ROWS_MATCH
  return false;
}

// The same rows for an error message, e.g. "8 or 16".
inline std::string grouped_rows_per_tile_names() {
  std::string names;
  for (int rows = 8; rows <= 64; rows *= 2) {
    if (!is_grouped_rows_per_tile(rows)) continue;
    if (!names.empty()) names += " or ";
    names += std::to_string(rows);
  }
  return names;
}

// Every expert's partial last tile costs at most one tile beyond rows / rows_per_tile.
constexpr int64_t expert_tiles_bound(int64_t rows, int64_t experts, int64_t rows_per_tile) {
  return rows / rows_per_tile + (rows < experts ? rows : experts);
}

void launch_sort_rows(const SortRowsParams& params, cudaStream_t stream);

// The routed experts' weighted sum, after the down projection: out[t] = sum over slots j of
// weights[t, j] * down[t * k + j] for the slots whose expert id is in [0, experts) (rows of other ids
// were never written and are not read). fp32 sums, fp16 out; hidden must be a multiple of 8.
struct CombineParams {
  const __half* down;     // [tokens * k, hidden]
  const float* weights;   // [tokens, k]
  const int* ids;         // [tokens, k]
  __half* out;            // [tokens, hidden]
  int tokens, k, hidden, experts;
};

void launch_combine(const CombineParams& params, cudaStream_t stream);

// SiLU-gated product of the gate/up projection: out[r, i] = silu(gate_up[r, i]) * gate_up[r, I + i]
// (fp32 math, one rounding), I = width / 2 a multiple of 8.
struct SiluMulParams {
  const __half* gate_up;  // [rows, 2I]
  __half* out;            // [rows, I]
  int rows, width;        // width = I
};

void launch_silu_mul(const SiluMulParams& params, cudaStream_t stream);

}  // namespace sm7x
