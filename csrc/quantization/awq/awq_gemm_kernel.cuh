// Fused AWQ W4A16 GEMM for small M (decode, MTP verification). Per k slab: the CTA stages x and the
// dequantised weights in shared memory, then each warp runs its WarpTile16x16 over the slab.
// Split-K over blockIdx.z writes fp32 partials that launch_splitk_reduce sums in a fixed order.
#pragma once
#include "core/cuda_check.h"
#include "core/int4.cuh"
#include "core/warp_tile.cuh"
#include "quantization/awq/awq_gemm.h"

namespace sm7x::awq {

constexpr int kSlabStride = kTileK + 8;  // halves; 80-byte rows stay 16-byte aligned

template <class ArchTag>
__global__ void __launch_bounds__(kThreads) gemm_kernel(GemmParams p) {
  __shared__ __align__(16) __half slab_x[kTileM][kSlabStride];
  __shared__ __align__(16) __half slab_w[kTileN][kSlabStride];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int m0 = blockIdx.y * kTileM, n0 = blockIdx.x * kTileN;
  const int k_begin = blockIdx.z * p.slabs_per_split * kTileK;
  const int k_end = min(p.K, k_begin + p.slabs_per_split * kTileK);
  const int words_per_row = p.K / 8;

  WarpTile16x16<ArchTag> tile;
  for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
    // x: 16 rows x 32 halves = 64 vectors of 8 halves (threads 0-63); rows past M are zero.
    if (tid < kTileM * kTileK / 8) {
      const int r = tid / (kTileK / 8), c = tid % (kTileK / 8) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (m0 + r < p.M) v = *reinterpret_cast<const uint4*>(p.x + (size_t)(m0 + r) * p.lda + k0 + c);
      *reinterpret_cast<uint4*>(&slab_x[r][c]) = v;
    }
    // Weights: 64 columns x 4 words; each thread dequantises two words (16 k) of one column.
    {
      const int col = tid / 2, word = tid % 2 * 2, n = n0 + col;
      __align__(16) __half2 w[2][4];
      if (n < p.N) {
        const uint2 q = *reinterpret_cast<const uint2*>(p.qweight + (size_t)n * words_per_row + k0 / 8 + word);
        const __half2 sz = p.scale_zero[(size_t)(k0 / p.group_size) * p.N + n];
        dequant_int4x8(q.x, sz, w[0]);
        dequant_int4x8(q.y, sz, w[1]);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) w[i / 4][i % 4] = __float2half2_rn(0.f);
      }
      *reinterpret_cast<uint4*>(&slab_w[col][word * 8]) = *reinterpret_cast<uint4*>(w[0]);
      *reinterpret_cast<uint4*>(&slab_w[col][word * 8 + 8]) = *reinterpret_cast<uint4*>(w[1]);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += kWarpTileK) {
      tile.mma(&slab_x[0][kk], kSlabStride, &slab_w[warp * kWarpTileN][kk], kSlabStride, lane);
    }
    __syncthreads();
  }

  const int n_warp = n0 + warp * kWarpTileN;
  tile.for_each(lane, [&](int r, int c, float v) {
    const int m = m0 + r, n = n_warp + c;
    if (m >= p.M || n >= p.N) return;
    if (p.splits == 1) {
      p.out[(size_t)m * p.N + n] = __float2half_rn(p.bias ? v + __half2float(p.bias[n]) : v);
    } else {
      p.partial[((size_t)blockIdx.z * p.M + m) * p.N + n] = v;
    }
  });
}

template <class ArchTag>
void launch_gemm_impl(const GemmParams& p, cudaStream_t stream) {
  const dim3 grid((p.N + kTileN - 1) / kTileN, (p.M + kTileM - 1) / kTileM, p.splits);
  gemm_kernel<ArchTag><<<grid, kThreads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x::awq
