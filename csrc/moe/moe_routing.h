// Mixture-of-experts routing for SM70/SM75 without vLLM's _moe_C (which has no sm_70 code): the
// softmax top-k of vLLM's topk_softmax, with its arguments and outputs, so the MoE layer can call
// either. Equal probabilities: the lower expert index first (deterministic; tested).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace sm7x {

constexpr int kMaxRoutedExperts = 1024;  // experts per token the routing kernel scores (32 per lane)
constexpr int kMaxTopK = 32;             // experts chosen per token (one lane each)
constexpr int kMaxSortedRows = 1 << 20;  // routed rows (tokens x k) one sort call takes

struct TopkSoftmaxParams {
  const void* gating;        // [tokens, experts] router logits (row stride gating_stride), dtype below
  int64_t gating_stride;
  float* weights;            // [tokens, k]: softmax probability of each chosen expert (renormalised
                             // over the k when asked)
  int* ids;                  // [tokens, k]: chosen experts, most probable first; equal
                             // probabilities: lower expert index first
  int* token_expert;         // [tokens, k]: j * tokens + token (vLLM's token_expert_indices)
  int tokens, experts, k;
  bool renormalize;
};

enum class GatingDtype { kFloat16, kBFloat16, kFloat32 };

void launch_topk_softmax(const TopkSoftmaxParams& params, GatingDtype dtype, cudaStream_t stream);

// The routed rows grouped by expert, for the grouped expert GEMM. Row r = token * k + slot of topk_ids.
// Fixed-size outputs (CUDA graphs): expert e's rows are sorted_rows[offsets[e] .. offsets[e+1]-1], in
// no particular order (each row's product is independent of the others); ids outside [0, experts)
// (expert-parallel masking) are left out and the tail of sorted_rows holds -1; active_experts lists
// the experts with rows, ascending, then -1s, and active_count says how many.
struct SortRowsParams {
  const int* topk_ids;       // [rows]
  int* offsets;              // [experts + 1]
  int* sorted_rows;          // [rows]
  int* active_experts;       // [experts]
  int* active_count;         // [1]
  int rows, experts;
};

void launch_sort_rows(const SortRowsParams& params, cudaStream_t stream);

// The grouped expert GEMM's CTA rows: each expert's sorted rows cut into tiles of rows_per_tile, in
// expert order. Fixed size (CUDA graphs): max_tiles = expert_tiles_bound(rows, experts, rows_per_tile);
// entries past the last tile have expert -1.
struct ExpertTilesParams {
  const int* offsets;  // [experts + 1] of moe_sort_rows
  int* tile_expert;    // [max_tiles]
  int* tile_row;       // [max_tiles]: first index into sorted_rows
  int experts, rows_per_tile, max_tiles;
};

// Every expert's partial last tile costs at most one tile beyond rows / rows_per_tile.
constexpr int64_t expert_tiles_bound(int64_t rows, int64_t experts, int64_t rows_per_tile) {
  return rows / rows_per_tile + (rows < experts ? rows : experts);
}

void launch_expert_tiles(const ExpertTilesParams& params, cudaStream_t stream);

}  // namespace sm7x
