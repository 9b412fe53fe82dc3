// Tiled AWQ W4A16 kernel for 17-128 rows (MTP verification of several sequences, small prefill
// chunks; awq_dispatch.h has the range): the weights are read once per 32 tokens instead of once per 8 or 16.
//
// CTA = 8 * kTokenTiles tokens x kWarps packed column tiles (16 n each) x a range of k tiles (grid
// split-K). Unlike the fused kernel, a warp owns one column tile and walks every k tile of the range,
// so no sums meet across warps; what the warps share is x: each k tile's x block (the CTA's tokens x
// 128 k) is loaded once by the whole CTA, coalesced, into shared memory in the order the mma
// fragments read it ([token block][vector v][lane]: a warp's read of one (t, v) is 512 contiguous
// bytes, conflict-free), register-staged one k tile ahead (no cp.async before SM80). Weights come
// straight from global memory into registers in fragment order, two k tiles ahead, as in the fused
// kernel (awq_fused_kernel.cuh, whose weight stream this shares).
#pragma once
#include <stdexcept>
#include <string>

#include "core/cuda_check.h"
#include "quantization/awq/awq_fused_kernel.cuh"

namespace sm7x::awq {

// Of the x block of one k tile (kTokens x 128 k as 16-byte vectors), thread i stages vectors
// i, i + threads, ...; 32 consecutive vectors are two tokens' 16 (a warp's loads are 512 contiguous
// bytes of two rows), ordered so that each 8 stored together land in distinct bank groups on Turing
// (on the Volta path's lane order they meet in pairs: a 2-way conflict on the stores, not measured).
template <class Warp, int kTokens, int kThreads>
struct XBlockStaging {
  static constexpr int kVectors = kTokens * kTileK / 8;
  static_assert(kVectors % kThreads == 0, "x block must divide evenly among the CTA's threads");
  static constexpr int kPerThread = kVectors / kThreads;

  const __half* src[kPerThread];  // this thread's vectors in k tile 0, nullptr past the rows
  int k_offset[kPerThread];       // their k within a k tile
  int dst[kPerThread];            // their index in the shared x block
  uint4 staged[kPerThread];

  template <bool kGrouped>
  __device__ XBlockStaging(const GemmParams& p, const CtaRows<kGrouped>& rows) {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int i = r * kThreads + threadIdx.x;
      const int pair = i / 32, sub = i % 32;
      const int v = sub / 8, token = 2 * pair + sub % 8 / 4, segment = sub % 4;
      const int m = rows.m0 + token;
      k_offset[r] = segment * kSlotK + v * 8;
      src[r] = m < rows.m_end ? p.x + (size_t)rows.x_row(m) * p.lda + k_offset[r] : nullptr;
      dst[r] = ((token / kTokensPerMma) * 4 + v) * 32 + Warp::x_lane(token % kTokensPerMma, segment);
    }
  }

  __device__ void load(const GemmParams& p, int k_tile) {
    const int k = k_tile * kTileK;
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      // K is a multiple of 32, so a segment is all in or all out.
      staged[r] = src[r] != nullptr && k + k_offset[r] < p.K ? __ldg(reinterpret_cast<const uint4*>(src[r] + k))
                                                              : make_uint4(0, 0, 0, 0);
    }
  }

  __device__ void store(uint4* block) const {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) block[dst[r]] = staged[r];
  }
};

// kGrouped: the CTA's rows and weights are one expert's (CtaRows, shared with the fused kernel);
// otherwise rows m0 .. of x and the one weight.
template <class ArchTag, int kTokenTiles, int kWarps, bool kGrouped>
__global__ void __launch_bounds__(kWarps * 32) tiled_gemm_kernel(const GemmParams p, const GroupedRows g) {
  using Warp = AwqWarp<ArchTag, kTokenTiles>;
  constexpr int kTokens = kTokenTiles * kTokensPerMma;
  constexpr int kBlockVectors = kTokenTiles * 4 * 32;
  __shared__ uint4 x_blocks[2][kBlockVectors];

  const int warp = threadIdx.x / 32, lane_id = threadIdx.x % 32;
  const int n_tile = blockIdx.y * kWarps + warp;
  const int tile_begin = blockIdx.z * p.tiles_per_split;
  const int tile_end = min(p.k_tiles, tile_begin + p.tiles_per_split);
  const CtaRows<kGrouped> rows(p, g, kTokens);
  if (rows.empty) return;  // the whole CTA, before any barrier
  const int m0 = rows.m0, m_end = rows.m_end;
  // A warp past the last column tile still stages x and meets the barriers; it reads the last tile's
  // weights (WeightStream keeps its loads in bounds) and writes nothing.
  const int slot = Warp::slot(lane_id);
  WeightStream<1, 1> weights(p, rows.qweight, rows.scale_zero, n_tile, slot, tile_begin);
  XBlockStaging<Warp, kTokens, kWarps * 32> x_staging(p, rows);
  Warp mma;
  x_staging.load(p, tile_begin);
  x_staging.store(x_blocks[0]);
  __syncthreads();
  int buffer = 0;
  stream_k_tiles(weights, tile_end, [&](const WeightFetch<1>& cur, int k_tile) {
    const bool more = k_tile + 1 < tile_end;
    if (more) x_staging.load(p, k_tile + 1);
    const uint4* block = x_blocks[buffer];
    mma.tile(cur.w[0], cur.sz[0], [&](int t, int v) { return block[(t * 4 + v) * 32 + lane_id]; });
    // The other buffer was last read before the previous barrier.
    if (more) x_staging.store(x_blocks[buffer ^ 1]);
    __syncthreads();
    buffer ^= 1;
  });
  mma.finish(lane_id);
  mma.for_each(lane_id, [&](int row, int token, float v) {
    const int m = m0 + token, n = n_tile * kTileRows + row;
    if (m >= m_end || n >= p.N) return;
    if (p.splits == 1) {
      p.out[(size_t)rows.out_row(m) * p.N + n] = __float2half_rn(p.bias ? v + __half2float(p.bias[n]) : v);
    } else {
      p.partial[((size_t)blockIdx.z * p.M + m) * p.N + n] = v;
    }
  });
}

template <class ArchTag, int kTokenTiles, int kWarps>
void launch_tiled_entry(const GemmParams& p, cudaStream_t stream) {
  constexpr int kTokens = kTokenTiles * kTokensPerMma, kColumns = kWarps * kTileRows;
  const dim3 grid((p.M + kTokens - 1) / kTokens, (p.N + kColumns - 1) / kColumns, p.splits);
  tiled_gemm_kernel<ArchTag, kTokenTiles, kWarps, false><<<grid, kWarps * 32, 0, stream>>>(p, GroupedRows{});
  SM7X_CHECK_LAUNCH();
}

template <class ArchTag, int kTokenTiles, int kWarps>
void launch_grouped_tiled_entry(const GemmParams& p, const GroupedRows& g, int tiles, cudaStream_t stream) {
  constexpr int kColumns = kWarps * kTileRows;
  const dim3 grid(tiles, (p.N + kColumns - 1) / kColumns, 1);
  tiled_gemm_kernel<ArchTag, kTokenTiles, kWarps, true><<<grid, kWarps * 32, 0, stream>>>(p, g);
  SM7X_CHECK_LAUNCH();
}

template <class ArchTag>
void launch_tiled(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH_TILED(T, W) \
  if (is_instantiation(config, T, W, 1)) return launch_tiled_entry<ArchTag, T, W>(p, stream);
  SM7X_AWQ_TILED_REGISTRY(SM7X_AWQ_LAUNCH_TILED)
#undef SM7X_AWQ_LAUNCH_TILED
  throw std::invalid_argument("awq: no tiled kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
void launch_grouped_tiled(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                          cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH_GROUPED_TILED(T, W) \
  if (is_grouped_tiled(config, T, W)) return launch_grouped_tiled_entry<ArchTag, T, W>(p, g, tiles, stream);
  SM7X_AWQ_GROUPED_TILED_REGISTRY(SM7X_AWQ_LAUNCH_GROUPED_TILED)
#undef SM7X_AWQ_LAUNCH_GROUPED_TILED
  throw std::invalid_argument("awq: no grouped tiled kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
int tiled_ctas_per_sm(const FusedConfig& config) {
#define SM7X_AWQ_TILED_OCCUPANCY(T, W) \
  if (is_instantiation(config, T, W, 1))  \
    return resident_ctas_per_sm<tiled_gemm_kernel<ArchTag, T, W, false>, W * 32>();
  SM7X_AWQ_TILED_REGISTRY(SM7X_AWQ_TILED_OCCUPANCY)
#undef SM7X_AWQ_TILED_OCCUPANCY
  return 0;
}

}  // namespace sm7x::awq
