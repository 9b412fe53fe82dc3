// Fused AWQ W4A16 kernel for small and medium M (decode, MTP verification, small batches).
//
// CTA = kColumnTiles packed column tiles (16 n each) x 8*kTokenTiles tokens x a range of k tiles
// (grid split-K); each x fragment it loads meets every one of its column tiles' weights.
// Its warps take the range's k tiles round-robin, so a CTA streams consecutive packed tiles and each
// warp loads its weights straight from global memory into registers in fragment order: no shared
// memory on the weight path. Weights are prefetched two k tiles ahead (register staging, the
// pre-cp.async pipeline) with streaming loads; x is small and re-read by every column tile, so it
// comes through the read-only cache just in time. Warps' sums meet in shared memory at the end.
#pragma once
#include <stdexcept>
#include <string>

#include "core/cuda_check.h"
#include "quantization/awq/awq_gemm.h"
#include "quantization/awq/awq_registry.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x::awq {

// One k tile of this lane's weights in each of the CTA's column tiles: its slot of both tile halves
// and their group scales.
template <int kColumnTiles>
struct WeightFetch {
  uint4 w[kColumnTiles][2];
  __half2 sz[kColumnTiles][2];
};

struct LaneColumns {
  const uint4* weights;         // this lane's slot in the column tile's first packed tile, nullptr past N
  const __half2* scale_zero[2];  // the lane's two columns (tile halves) in group row 0, or nullptr
  int k_in_tile;                // first k of the lane's 32-k segment
};

template <int kColumnTiles>
__device__ __forceinline__ WeightFetch<kColumnTiles> fetch_weights(const GemmParams& p,
                                                                   const LaneColumns (&lanes)[kColumnTiles],
                                                                   int k_tile, int tile_end) {
  WeightFetch<kColumnTiles> f{};
  if (k_tile >= tile_end) return f;
#pragma unroll
  for (int c = 0; c < kColumnTiles; ++c) {
    const LaneColumns& lane = lanes[c];
    if (kColumnTiles > 1 && lane.weights == nullptr) continue;  // one tile per CTA: never past N
    const int k = k_tile * kTileK + lane.k_in_tile;
    const size_t group_row = (size_t)(k >> p.group_shift) * p.N;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      f.w[c][h] = __ldcs(lane.weights + (size_t)(2 * k_tile + h) * kSlots);  // streamed once: evict first
      // Padding (n >= N or k >= K) holds zero nibbles; a zero scale makes those weights exactly 0.
      f.sz[c][h] = (lane.scale_zero[h] != nullptr && k < p.K) ? lane.scale_zero[h][group_row] : __half2{};
    }
  }
  return f;
}

// A CTA's rows and weights. kGrouped: one expert's (GroupedRows: rows are indices into sorted_rows, up to
// that expert's end); otherwise rows m0 = blockIdx.x * tokens .. of x and the one weight.
template <bool kGrouped>
struct CtaRows {
  const GroupedRows& g;
  bool empty = false;  // a grouped CTA past the last tile
  int m0, m_end;
  const uint4* qweight;
  const __half2* scale_zero;

  __device__ CtaRows(const GemmParams& p, const GroupedRows& grouped, int tokens)
      : g(grouped), m0(blockIdx.x * tokens), m_end(p.M), qweight(p.qweight), scale_zero(p.scale_zero) {
    if constexpr (kGrouped) {
      const int expert = g.tile_expert[blockIdx.x];
      empty = expert < 0;
      if (empty) return;
      m0 = g.tile_row[blockIdx.x];
      m_end = g.expert_end[expert];
      qweight += expert * g.expert_weight_stride;
      scale_zero += expert * g.expert_scale_stride;
    }
  }
  // Row of x (dense: m; grouped: the routed row's token or row) and of out for index m < m_end.
  __device__ int x_row(int m) const {
    if constexpr (kGrouped) return g.sorted_rows[m] / g.x_row_divisor; else return m;
  }
  __device__ int out_row(int m) const {
    if constexpr (kGrouped) return g.sorted_rows[m]; else return m;
  }
};

// kGrouped: the CTA's rows and weights are one expert's (CtaRows); otherwise rows m0 .. of x and
// the one weight. Both share everything after that choice.
template <class ArchTag, int kTokenTiles, int kWarps, int kColumnTiles, bool kGrouped>
__global__ void __launch_bounds__(kWarps * 32) fused_gemm_kernel(const GemmParams p, const GroupedRows g) {
  using Warp = AwqWarp<ArchTag, kTokenTiles>;
  constexpr int kTokens = kTokenTiles * kTokensPerMma;
  constexpr int kColumns = kColumnTiles * kTileRows;
  __shared__ float sums[kWarps][kColumns][kTokens + 1];  // +1: conflict-free column reads

  const int warp = threadIdx.x / 32, lane_id = threadIdx.x % 32;
  const int first_n_tile = blockIdx.y * kColumnTiles;
  const int n_tiles = (p.N + kTileRows - 1) / kTileRows;
  const int tile_begin = blockIdx.z * p.tiles_per_split;
  const int tile_end = min(p.k_tiles, tile_begin + p.tiles_per_split);
  const CtaRows<kGrouped> rows(p, g, kTokens);
  if (rows.empty) return;  // a grouped grid is sized for the most tiles any routing can make
  const int m0 = rows.m0, m_end = rows.m_end;
  const uint4* qweight = rows.qweight;
  const __half2* scale_zero = rows.scale_zero;

  const int slot = Warp::slot(lane_id), k_in_tile = slot % 4 * kSlotK;
  LaneColumns lanes[kColumnTiles];
#pragma unroll
  for (int c = 0; c < kColumnTiles; ++c) {
    const int n_tile = first_n_tile + c;
    const bool in_n = kColumnTiles == 1 || n_tile < n_tiles;  // one tile per CTA: the grid ends at N
    lanes[c].weights = in_n ? qweight + (size_t)n_tile * p.k_tiles * 2 * kSlots + slot : nullptr;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n_tile * kTileRows + 8 * h + slot / 4;
      lanes[c].scale_zero[h] = n < p.N ? scale_zero + n : nullptr;
    }
    lanes[c].k_in_tile = k_in_tile;
  }
  const __half* x_rows[kTokenTiles];  // this lane's token in each 8-token block, or nullptr past the rows
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    const int m = m0 + t * kTokensPerMma + Warp::x_token(lane_id);
    x_rows[t] = m < m_end ? p.x + (size_t)rows.x_row(m) * p.lda + k_in_tile : nullptr;
  }

  Warp mma[kColumnTiles];
  int k_tile = tile_begin + warp;
  WeightFetch<kColumnTiles> ahead1 = fetch_weights(p, lanes, k_tile, tile_end);
  WeightFetch<kColumnTiles> ahead2 = fetch_weights(p, lanes, k_tile + kWarps, tile_end);
  for (; k_tile < tile_end; k_tile += kWarps) {
    const WeightFetch<kColumnTiles> cur = ahead1;
    ahead1 = ahead2;
    ahead2 = fetch_weights(p, lanes, k_tile + 2 * kWarps, tile_end);
    const int k = k_tile * kTileK;
    uint4 x[kTokenTiles][4];
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
      const bool in = x_rows[t] != nullptr && k + k_in_tile < p.K;  // K is a multiple of 32
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        x[t][v] = in ? __ldg(reinterpret_cast<const uint4*>(x_rows[t] + k) + v) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int c = 0; c < kColumnTiles; ++c) mma[c].tile(cur.w[c], cur.sz[c], [&](int t, int v) { return x[t][v]; });
  }
#pragma unroll
  for (int c = 0; c < kColumnTiles; ++c) {
    mma[c].finish(lane_id);
    mma[c].for_each(lane_id, [&](int row, int token, float v) { sums[warp][c * kTileRows + row][token] = v; });
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kColumns * kTokens; i += kWarps * 32) {
    const int row = i % kColumns, token = i / kColumns;  // consecutive threads: consecutive n
    const int m = m0 + token, n = first_n_tile * kTileRows + row;
    if (m >= m_end || n >= p.N) continue;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += sums[w][row][token];
    if (p.splits == 1) {
      p.out[(size_t)rows.out_row(m) * p.N + n] = __float2half_rn(p.bias ? v + __half2float(p.bias[n]) : v);
    } else {
      p.partial[((size_t)blockIdx.z * p.M + m) * p.N + n] = v;
    }
  }
}

template <class ArchTag, int kTokenTiles, int kWarps, int kColumnTiles>
void launch_fused_entry(const GemmParams& p, cudaStream_t stream) {
  constexpr int kTokens = kTokenTiles * kTokensPerMma, kColumns = kColumnTiles * kTileRows;
  const dim3 grid((p.M + kTokens - 1) / kTokens, (p.N + kColumns - 1) / kColumns, p.splits);
  fused_gemm_kernel<ArchTag, kTokenTiles, kWarps, kColumnTiles, false>
      <<<grid, kWarps * 32, 0, stream>>>(p, GroupedRows{});
  SM7X_CHECK_LAUNCH();
}

template <class ArchTag, int kTokenTiles, int kWarps, int kColumnTiles>
void launch_grouped_entry(const GemmParams& p, const GroupedRows& g, int tiles, cudaStream_t stream) {
  constexpr int kColumns = kColumnTiles * kTileRows;
  const dim3 grid(tiles, (p.N + kColumns - 1) / kColumns, 1);
  fused_gemm_kernel<ArchTag, kTokenTiles, kWarps, kColumnTiles, true><<<grid, kWarps * 32, 0, stream>>>(p, g);
  SM7X_CHECK_LAUNCH();
}

// CTAs per SM this GPU holds of a kernel launched with kThreads per CTA (the plan's occupancy), asked
// once per kernel and process: one GPU model per server.
template <auto kKernel, int kThreads>
int resident_ctas_per_sm() {
  static const int ctas = [] {
    int n = 0;
    SM7X_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kKernel, kThreads, 0));
    return n;
  }();
  return ctas;
}

// Registry entry lookup for one arch path (instantiated in awq_gemm_sm70.cu / awq_gemm_sm75.cu).
template <class ArchTag>
void launch_fused_impl(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_fused_entry<ArchTag, T, W, C>(p, stream);
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_LAUNCH)
#undef SM7X_AWQ_LAUNCH
  throw std::invalid_argument("awq: no fused kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
void launch_grouped_impl(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                         cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH_GROUPED(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_grouped_entry<ArchTag, T, W, C>(p, g, tiles, stream);
  SM7X_AWQ_GROUPED_REGISTRY(SM7X_AWQ_LAUNCH_GROUPED)
#undef SM7X_AWQ_LAUNCH_GROUPED
  throw std::invalid_argument("awq: no grouped kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
int fused_ctas_per_sm_impl(const FusedConfig& config) {
#define SM7X_AWQ_OCCUPANCY(T, W, C) \
  if (is_instantiation(config, T, W, C))  \
    return resident_ctas_per_sm<fused_gemm_kernel<ArchTag, T, W, C, false>, W * 32>();
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_OCCUPANCY)
#undef SM7X_AWQ_OCCUPANCY
  return 0;
}

}  // namespace sm7x::awq
