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
#include "core/resident_ctas.h"
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

// This lane's weights and group scales in each of the CTA's column tiles, fetched one k tile at a time
// from tile `next` on, kStride tiles apart (a warp's share of the CTA's k range). It keeps running
// addresses, so a fetch costs two loads per half and no index arithmetic. Every load is in bounds: a
// column tile past N reads the last tile and a column past N the last column (their sums are never
// written; rows of the mma do not mix). What must be exact is k past K (the zero-padded last tile):
// its scales are 0, so its weights are exactly 0.
template <int kColumnTiles, int kStride>
struct WeightStream {
  const uint4* weights[kColumnTiles];          // the lane's slot in tile `next`
  const __half2* scale_zero[kColumnTiles][2];  // its two columns' {scale, -zero*scale} in tile next's group row
  int next;                                    // the tile the next fetch reads
  int k_tiles;                                 // tiles in which the lane's 32-k segment is below K
  int scale_step;                              // half2 between the group rows of tiles kStride apart

  // first_n_tile: the CTA's first column tile; first_tile: the first k tile this stream fetches.
  __device__ WeightStream(const GemmParams& p, const uint4* qweight, const __half2* scale_zero_base, int first_n_tile,
                          int slot, int first_tile)
      : next(first_tile) {
    const int n_tiles = (p.N + kTileRows - 1) / kTileRows;
    const int k_in_tile = slot % 4 * kSlotK;
    k_tiles = (p.K - k_in_tile + kTileK - 1) / kTileK;
    scale_step = (kStride * kTileK >> p.group_shift) * p.N;
    const size_t group_row = (size_t)((first_tile * kTileK + k_in_tile) >> p.group_shift) * p.N;
#pragma unroll
    for (int c = 0; c < kColumnTiles; ++c) {
      const int n_tile = min(first_n_tile + c, n_tiles - 1);
      weights[c] = qweight + ((size_t)n_tile * p.k_tiles + first_tile) * 2 * kSlots + slot;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = min((first_n_tile + c) * kTileRows + 8 * h + slot / 4, p.N - 1);
        scale_zero[c][h] = scale_zero_base + group_row + n;
      }
    }
  }

  // Tile `next`'s weights (next must be below the weight's k tiles), then next += kStride.
  __device__ WeightFetch<kColumnTiles> fetch() {
    WeightFetch<kColumnTiles> f;
    const bool in_k = next < k_tiles;
#pragma unroll
    for (int c = 0; c < kColumnTiles; ++c) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        f.w[c][h] = __ldcs(weights[c] + h * kSlots);  // streamed once: evict first
        f.sz[c][h] = in_k ? *scale_zero[c][h] : __half2{};
        scale_zero[c][h] += scale_step;
      }
      weights[c] += kStride * 2 * kSlots;
    }
    next += kStride;
    return f;
  }
};

// Runs consume(fetch, k_tile) over k_tile = stream.next, + kStride, ... below end, with the next two
// tiles' weights in flight during each: three fetch buffers in fixed roles (the loop unrolled by
// three), so the pipeline moves no registers and zero-fills none.
template <int kColumnTiles, int kStride, class Consume>
__device__ __forceinline__ void stream_k_tiles(WeightStream<kColumnTiles, kStride>& stream, int end,
                                               Consume&& consume) {
  int k_tile = stream.next;
  WeightFetch<kColumnTiles> b0{}, b1{}, b2{};
  if (stream.next < end) b0 = stream.fetch();
  if (stream.next < end) b1 = stream.fetch();
  if (stream.next < end) b2 = stream.fetch();
  while (k_tile < end) {
    consume(b0, k_tile);
    if (stream.next < end) b0 = stream.fetch();
    if ((k_tile += kStride) >= end) break;
    consume(b1, k_tile);
    if (stream.next < end) b1 = stream.fetch();
    if ((k_tile += kStride) >= end) break;
    consume(b2, k_tile);
    if (stream.next < end) b2 = stream.fetch();
    k_tile += kStride;
  }
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
  const int tile_begin = blockIdx.z * p.tiles_per_split;
  const int tile_end = min(p.k_tiles, tile_begin + p.tiles_per_split);
  const CtaRows<kGrouped> rows(p, g, kTokens);
  if (rows.empty) return;  // a grouped grid is sized for the most tiles any routing can make
  const int m0 = rows.m0, m_end = rows.m_end;

  const int slot = Warp::slot(lane_id), k_in_tile = slot % 4 * kSlotK;
  WeightStream<kColumnTiles, kWarps> weights(p, rows.qweight, rows.scale_zero, first_n_tile, slot, tile_begin + warp);
  // This lane's x: 32 k of one token per k tile, the k its weight slot holds. A token past the rows reads
  // the last row (its sums are never written) and a segment past K the row's last 32 k (its weights are
  // exactly 0): every load is in bounds and nothing is zero-filled.
  const __half* x_rows[kTokenTiles];
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    const int m = min(m0 + t * kTokensPerMma + Warp::x_token(lane_id), m_end - 1);
    x_rows[t] = p.x + (size_t)rows.x_row(m) * p.lda;
  }

  Warp mma[kColumnTiles];
  stream_k_tiles(weights, tile_end, [&](const WeightFetch<kColumnTiles>& cur, int k_tile) {
    const int k = min(k_tile * kTileK + k_in_tile, p.K - kSlotK);  // K is a multiple of 32
    uint4 x[kTokenTiles][4];
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
      for (int v = 0; v < 4; ++v) x[t][v] = __ldg(reinterpret_cast<const uint4*>(x_rows[t] + k) + v);
    }
#pragma unroll
    for (int c = 0; c < kColumnTiles; ++c) mma[c].tile(cur.w[c], cur.sz[c], [&](int t, int v) { return x[t][v]; });
  });
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

// Registry entry lookup for one arch path (instantiated in awq_gemm_sm70.cu / awq_gemm_sm75.cu).
template <class ArchTag>
void launch_fused(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_fused_entry<ArchTag, T, W, C>(p, stream);
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_LAUNCH)
#undef SM7X_AWQ_LAUNCH
  throw std::invalid_argument("awq: no fused kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
void launch_grouped(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                    cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH_GROUPED(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_grouped_entry<ArchTag, T, W, C>(p, g, tiles, stream);
  SM7X_AWQ_GROUPED_REGISTRY(SM7X_AWQ_LAUNCH_GROUPED)
#undef SM7X_AWQ_LAUNCH_GROUPED
  throw std::invalid_argument("awq: no grouped kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
int fused_ctas_per_sm(const FusedConfig& config) {
#define SM7X_AWQ_OCCUPANCY(T, W, C) \
  if (is_instantiation(config, T, W, C))  \
    return resident_ctas_per_sm<fused_gemm_kernel<ArchTag, T, W, C, false>, W * 32>();
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_OCCUPANCY)
#undef SM7X_AWQ_OCCUPANCY
  return 0;
}

}  // namespace sm7x::awq
