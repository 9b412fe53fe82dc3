// Shared-x AWQ W4A16 kernel for 9-64 rows (experimental: registered for measurement, never chosen by the
// cost model; awq_registry.h).
//
// CTA = kWarps packed column tiles (16 n each, one per warp) x 8*kTokenTiles tokens x a range of k tiles
// (grid split-K). Why: the fused kernel's CTA covers 16-32 columns, so every x element crosses L1 N/16 to
// N/32 times, and from 16 rows on those loads, not the weights, bound it (docs/roadmap.md). Here each k
// tile of x is staged once in shared memory (one 16-byte vector per thread, double-buffered, register
// staging: no cp.async before SM80) and read by all kWarps warps, so x crosses L1 N/(16*kWarps) times.
// Each warp streams its own column tile's weights straight into registers in fragment order, two k
// tiles ahead, exactly as the fused kernel does, and runs the same AwqWarp tile step; the only new
// piece is where its x fragments come from.
//
// Shared layout of one x tile: [token][16 vectors of 8 k]. A lane reads the vector (token, segment s,
// v) = k 32s + 8v .. +7; the vector sits at 4s + (v ^ (s >> 1 & 1) ^ swizzle(token)), which puts the
// 8 lanes of every 16-byte read phase in 8 different bank groups on both arch paths' lane maps, and the
// 8 threads of every store phase too.
#pragma once
#include "core/cuda_check.h"
#include "quantization/awq/awq_fused_kernel.cuh"
#include "quantization/awq/awq_gemm.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x::awq {

constexpr int kXVecsPerRow = kTileK / 8;  // 16-byte vectors of x per token in a k tile

// Position of x vector (segment, v) of `token` in its shared-memory row (see the header).
__device__ __forceinline__ int shared_x_slot(int token, int segment, int v) {
  const int token_bits = (token & 1) << 1 | (token >> 1 & 1);
  return 4 * segment + (v ^ (segment >> 1 & 1) ^ token_bits);
}

template <class ArchTag, int kTokenTiles, int kWarps>
__global__ void __launch_bounds__(kWarps * 32) shared_x_gemm_kernel(const GemmParams p) {
  using Warp = AwqWarp<ArchTag, kTokenTiles>;
  constexpr int kTokens = kTokenTiles * kTokensPerMma;
  constexpr int kThreads = kWarps * 32;
  static_assert(kTokens * kXVecsPerRow == kThreads, "one x vector per thread and k tile");
  __shared__ uint4 x_s[2][kTokens][kXVecsPerRow];

  const int warp = threadIdx.x / 32, lane_id = threadIdx.x % 32;
  const int tile_begin = blockIdx.z * p.tiles_per_split;
  const int tile_end = min(p.k_tiles, tile_begin + p.tiles_per_split);
  const int m0 = blockIdx.x * kTokens;

  // This thread's x vector of every k tile: token / 16 vectors, vector % 16 (k 8 * vector ..).
  const int stage_token = threadIdx.x / kXVecsPerRow, stage_vec = threadIdx.x % kXVecsPerRow;
  const int stage_segment = stage_vec / 4;
  const __half* stage_row =
      m0 + stage_token < p.M ? p.x + (size_t)(m0 + stage_token) * p.lda + 8 * stage_vec : nullptr;
  uint4* const stage_dst = &x_s[0][stage_token][shared_x_slot(stage_token, stage_segment, stage_vec % 4)];
  auto load_x = [&](int k_tile) {
    const bool in = stage_row != nullptr && k_tile * kTileK + kSlotK * stage_segment < p.K;  // K: multiple of 32
    return in ? __ldg(reinterpret_cast<const uint4*>(stage_row + k_tile * kTileK)) : make_uint4(0, 0, 0, 0);
  };

  // This warp's column tile; a warp past N only stages x and meets the barriers.
  const int n_tile = blockIdx.y * kWarps + warp;
  const bool in_n = n_tile * kTileRows < p.N;
  const int slot = Warp::slot(lane_id), segment = slot % 4;
  LaneColumns lanes[1];
  lanes[0].weights = in_n ? p.qweight + (size_t)n_tile * p.k_tiles * 2 * kSlots + slot : nullptr;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int n = n_tile * kTileRows + 8 * h + slot / 4;
    lanes[0].scale_zero[h] = n < p.N ? p.scale_zero + n : nullptr;
  }
  lanes[0].k_in_tile = segment * kSlotK;
  const int tile_stop = in_n ? tile_end : tile_begin;  // no weight loads past N

  Warp mma;
  uint4 x_next = load_x(tile_begin);
  WeightFetch<1> ahead1 = fetch_weights(p, lanes, tile_begin, tile_stop);
  WeightFetch<1> ahead2 = fetch_weights(p, lanes, tile_begin + 1, tile_stop);
  *stage_dst = x_next;
  __syncthreads();
  for (int k_tile = tile_begin; k_tile < tile_end; ++k_tile) {
    const int buffer = (k_tile - tile_begin) & 1;
    const bool more = k_tile + 1 < tile_end;
    if (more) x_next = load_x(k_tile + 1);  // lands during this tile's mma
    if (in_n) {
      const WeightFetch<1> cur = ahead1;
      ahead1 = ahead2;
      ahead2 = fetch_weights(p, lanes, k_tile + 2, tile_stop);
      uint4 x[kTokenTiles][4];
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t) {
        const int token = t * kTokensPerMma + Warp::x_token(lane_id);
#pragma unroll
        for (int v = 0; v < 4; ++v) x[t][v] = x_s[buffer][token][shared_x_slot(token, segment, v)];
      }
      mma.tile(cur.w[0], cur.sz[0], x);
    }
    if (more) stage_dst[(buffer ^ 1) * kTokens * kXVecsPerRow] = x_next;  // the other buffer, read last tile
    __syncthreads();
  }
  if (!in_n) return;
  mma.finish(lane_id);
  mma.for_each(lane_id, [&](int row, int token, float v) {
    const int m = m0 + token, n = n_tile * kTileRows + row;
    if (m >= p.M || n >= p.N) return;
    if (p.splits == 1) {
      p.out[(size_t)m * p.N + n] = __float2half_rn(p.bias ? v + __half2float(p.bias[n]) : v);
    } else {
      p.partial[((size_t)blockIdx.z * p.M + m) * p.N + n] = v;
    }
  });
}

template <class ArchTag, int kTokenTiles, int kWarps>
void launch_shared_x_entry(const GemmParams& p, cudaStream_t stream) {
  constexpr int kTokens = kTokenTiles * kTokensPerMma, kColumns = kWarps * kTileRows;
  const dim3 grid((p.M + kTokens - 1) / kTokens, (p.N + kColumns - 1) / kColumns, p.splits);
  shared_x_gemm_kernel<ArchTag, kTokenTiles, kWarps><<<grid, kWarps * 32, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

template <class ArchTag, int kTokenTiles, int kWarps>
int shared_x_entry_ctas_per_sm() {
  static const int ctas = [] {  // per process: one GPU model per server
    int n = 0;
    SM7X_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, shared_x_gemm_kernel<ArchTag, kTokenTiles, kWarps>, kWarps * 32, 0));
    return n;
  }();
  return ctas;
}

}  // namespace sm7x::awq
