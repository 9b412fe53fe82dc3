// Fused AWQ W4A16 GEMM for small M (decode, MTP verification). Per k slab: the CTA stages x and the
// dequantised weights in shared memory, then each warp runs its WarpTile16x16 over the slab.
// Split-K over blockIdx.z writes fp32 partials that launch_splitk_reduce sums in a fixed order.
// v1: correct and simple; the TurboMind-style prepacked fragments and deeper pipeline are next.
#pragma once
#include "core/cuda_check.h"
#include "core/int4.cuh"
#include "core/warp_tile.cuh"
#include "quantization/awq/awq_gemm.h"

namespace sm7x::awq {

constexpr int kSlabStride = kTileK + 8;  // halves; 80-byte rows stay 16-byte aligned

// What one thread fetches from global memory for one k slab; fetched a slab ahead (register
// double buffering, the pre-cp.async way) so the loads overlap the previous slab's mmas.
struct SlabFetch {
  uint4 x;             // 8 halves of x (threads 0-63)
  uint2 q;             // 16 k of one weight column
  __half2 scale_zero;  // that column's group scale and -zero*scale
};

__device__ __forceinline__ SlabFetch fetch_slab(const GemmParams& p, int k0, int m0, int n0, int tid) {
  SlabFetch f{make_uint4(0, 0, 0, 0), make_uint2(0, 0), __float2half2_rn(0.f)};
  if (tid < kTileM * kTileK / 8) {
    const int r = tid / (kTileK / 8), c = tid % (kTileK / 8) * 8;
    if (m0 + r < p.M) f.x = *reinterpret_cast<const uint4*>(p.x + (size_t)(m0 + r) * p.lda + k0 + c);
  }
  const int n = n0 + tid / 2;
  if (n < p.N) {
    f.q = *reinterpret_cast<const uint2*>(p.qweight + (size_t)n * (p.K / 8) + k0 / 8 + tid % 2 * 2);
    f.scale_zero = p.scale_zero[(size_t)(k0 / p.group_size) * p.N + n];
  }
  return f;
}

template <class ArchTag>
__global__ void __launch_bounds__(kThreads) gemm_kernel(GemmParams p) {
  __shared__ __align__(16) __half slab_x[kTileM][kSlabStride];
  __shared__ __align__(16) __half slab_w[kTileN][kSlabStride];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int m0 = blockIdx.y * kTileM, n0 = blockIdx.x * kTileN;
  const int k_begin = blockIdx.z * p.slabs_per_split * kTileK;
  const int k_end = min(p.K, k_begin + p.slabs_per_split * kTileK);

  WarpTile16x16<ArchTag> tile;
  SlabFetch next = fetch_slab(p, k_begin, m0, n0, tid);
  for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
    const SlabFetch cur = next;
    if (tid < kTileM * kTileK / 8) {
      *reinterpret_cast<uint4*>(&slab_x[tid / (kTileK / 8)][tid % (kTileK / 8) * 8]) = cur.x;
    }
    {  // columns past N fetched zeros, so they dequantise to zero weights (scale 0)
      __align__(16) __half2 w[2][4];
      dequant_int4x8(cur.q.x, cur.scale_zero, w[0]);
      dequant_int4x8(cur.q.y, cur.scale_zero, w[1]);
      __half* row = &slab_w[tid / 2][tid % 2 * 16];
      *reinterpret_cast<uint4*>(row) = *reinterpret_cast<uint4*>(w[0]);
      *reinterpret_cast<uint4*>(row + 8) = *reinterpret_cast<uint4*>(w[1]);
    }
    __syncthreads();
    if (k0 + kTileK < k_end) next = fetch_slab(p, k0 + kTileK, m0, n0, tid);
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
