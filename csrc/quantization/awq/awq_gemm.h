// AWQ W4A16 GEMM: out[M, N] (fp16) = x[M, K] (fp16) * W[K, N], W pre-packed once at load time by
// vllm_sm7x/quantization/awq_format.py into the order the kernels' fragments read:
//
//   qweight    int32 [N/16, K/128, 2, 32, 4]  (N and K zero-padded up to multiples of 16 and 128)
//     Tile (16 rows n, 128 k) = two halves h (rows 8h..8h+7) of 32 slots; slot s = 4i + t holds row
//     8h + i, k = 32t .. 32t+31 as 4 words of 8 consecutive k (nibble order in core/int4.cuh). A warp
//     reads one half as 512 contiguous bytes, each lane a 16-byte slot.
//   scale_zero int32 [K/G, N]: half2 {scale, -zero * scale} per group and column (not padded)
//
// The k order inside a tile is free (k is summed over), so each lane's x fragment is 32 consecutive
// k of one token, loaded as four 16-byte vectors, for the same k its weight slot holds.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/arch.h"

namespace sm7x::awq {

constexpr int kTileRows = 16;     // output columns (n) per packed tile
constexpr int kTileK = 128;       // k per packed tile
constexpr int kSlots = 32;        // 16-byte slots per tile half, one per lane
constexpr int kSlotK = 32;        // k per slot
constexpr int kTokensPerMma = 8;  // tokens (rows of x) per mma column block

// What the fused kernel needs. qweight and x rows are 16-byte aligned (checked by the op).
struct GemmParams {
  const __half* x;            // [M, K], row stride lda (halves)
  const uint4* qweight;       // packed, see above
  const __half2* scale_zero;  // [K/G, N]
  const __half* bias;         // [N] or nullptr
  __half* out;                // [M, N], written when splits == 1
  float* partial;             // [splits, M, N], written when splits > 1
  int M, N, K, lda, group_size;
  int group_shift;            // log2(group_size)
  int k_tiles;                // ceil(K / kTileK)
  int splits, tiles_per_split;
};

// Grouped launch (MoE experts): each CTA takes the rows of one expert, gathered through the routing's
// sorted rows, and that expert's weights. Row r of sorted_rows is a routed row (token * topk + slot);
// x row = r / x_row_divisor (topk when x holds tokens, 1 when it holds routed rows); out row = r.
struct GroupedRows {
  const int* tile_expert;        // [tiles]: expert of CTA row blockIdx.x, -1 for CTAs past the last tile
  const int* tile_row;           // [tiles]: its first index into sorted_rows
  const int* expert_end;         // [experts]: one past each expert's last index into sorted_rows
  const int* sorted_rows;        // routed rows grouped by expert (moe_sort_rows)
  int x_row_divisor;
  int64_t expert_weight_stride;  // uint4 per expert of qweight
  int64_t expert_scale_stride;   // half2 per expert of scale_zero
};

// One instantiation of the fused kernel (registry in awq_registry.h) plus its grid split-K.
struct FusedConfig {
  int token_tiles;       // 8-token mma column blocks per CTA: tokens per CTA = 8 * token_tiles
  int warps;             // warps per CTA; they share the CTA's columns and split its k range
  int splits;            // CTAs along k (grid split-K, fp32 partials + launch_splitk_reduce)
  int column_tiles = 1;  // packed 16-column tiles per CTA, each x fragment used against all of them
};

// Whether config is the instantiation (token_tiles, warps, column_tiles); splits are a launch value.
inline bool is_instantiation(const FusedConfig& config, int token_tiles, int warps, int column_tiles) {
  return config.token_tiles == token_tiles && config.warps == warps && config.column_tiles == column_tiles;
}

// Whether config is the grouped tiled instantiation (token_tiles, warps): a CTA covers one column tile
// per warp, so its column_tiles equal its warps.
inline bool is_grouped_tiled(const FusedConfig& config, int token_tiles, int warps) {
  return is_instantiation(config, token_tiles, warps, warps);
}

// "T token tiles, W warps and C column tiles", for errors that name an instantiation.
inline std::string describe(const FusedConfig& config) {
  return std::to_string(config.token_tiles) + " token tiles, " + std::to_string(config.warps) + " warps and " +
         std::to_string(config.column_tiles) + " column tiles";
}

// The ArchTag templates below are defined in awq_fused_kernel.cuh and awq_tiled_kernel.cuh and instantiated
// for Sm70 and Sm75 by awq_gemm_sm70.cu and awq_gemm_sm75.cu (SM7X_AWQ_INSTANTIATE; no other tag links).
template <class ArchTag>
void launch_fused(const GemmParams& p, const FusedConfig& config, cudaStream_t stream);

// Grouped launch over `tiles` CTA rows (splits must be 1: experts are narrow, their CTAs fill the GPU).
template <class ArchTag>
void launch_grouped(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                    cudaStream_t stream);

// The tiled kernel (awq_tiled_kernel.cuh): config.token_tiles and config.warps name its registry entry
// (SM7X_AWQ_TILED_REGISTRY; column_tiles is 1), config.splits its grid split-K.
template <class ArchTag>
void launch_tiled(const GemmParams& p, const FusedConfig& config, cudaStream_t stream);
// Its grouped (MoE) form over `tiles` CTA rows (SM7X_AWQ_GROUPED_TILED_REGISTRY; splits 1).
template <class ArchTag>
void launch_grouped_tiled(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                          cudaStream_t stream);
template <class ArchTag>
int tiled_ctas_per_sm(const FusedConfig& config);

// Occupancy (resident CTAs per SM) of a registry entry on the current device; for the cost model.
template <class ArchTag>
int fused_ctas_per_sm(const FusedConfig& config);

// Every ArchTag template above, instantiated for one arch path (its .cu file names the tag once).
#define SM7X_AWQ_INSTANTIATE(Arch)                                                                                  \
  template void launch_fused<Arch>(const GemmParams&, const FusedConfig&, cudaStream_t);                            \
  template void launch_grouped<Arch>(const GemmParams&, const GroupedRows&, int, const FusedConfig&, cudaStream_t); \
  template int fused_ctas_per_sm<Arch>(const FusedConfig&);                                                         \
  template void launch_tiled<Arch>(const GemmParams&, const FusedConfig&, cudaStream_t);                            \
  template void launch_grouped_tiled<Arch>(const GemmParams&, const GroupedRows&, int, const FusedConfig&,          \
                                           cudaStream_t);                                                           \
  template int tiled_ctas_per_sm<Arch>(const FusedConfig&);

// out = fp16(sum over splits of partial + bias), summed in a fixed order (deterministic).
void launch_splitk_reduce(const float* partial, const __half* bias, __half* out, int splits, int M, int N,
                          cudaStream_t stream);

// out[N, K] (fp16) = W^T dequantised, for the large-M path (dequantise, then cuBLAS). May cover a
// column range of a larger weight: qweight and scale_zero point at its first tile / column, and
// scale_zero_stride is the full weight's N.
void launch_dequantize(const uint4* qweight, const __half2* scale_zero, __half* out, int N, int K, int group_size,
                       int scale_zero_stride, cudaStream_t stream);

}  // namespace sm7x::awq
