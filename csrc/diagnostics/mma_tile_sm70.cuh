// Volta warp tile: the four quad pairs each own one 8x8 quarter of the 16x16 tile; a k8 slab is two
// m8n8k4 steps.
#pragma once
#include "core/mma_sm70.h"
#include "diagnostics/mma_gemm_kernel.cuh"

namespace sm7x::diagnostics {

template <>
struct WarpTile<Sm70> {
  float acc[8] = {};

  __device__ static int row0(int lane) { return (sm70::quad_pair(lane) & 1) * 8; }
  __device__ static int col0(int lane) { return (sm70::quad_pair(lane) >> 1) * 8; }

  __device__ void mma(const __half (*slab_a)[kSlabStride], const __half (*slab_b)[kSlabStride], int lane) {
#pragma unroll
    for (int k = 0; k < kTileK; k += 4) {
      uint32_t fa[2], fb[2];
      const auto* pa = reinterpret_cast<const uint32_t*>(&slab_a[row0(lane) + sm70::a_row(lane)][k]);
      const auto* pb = reinterpret_cast<const uint32_t*>(&slab_b[col0(lane) + sm70::b_col(lane)][k]);
      fa[0] = pa[0], fa[1] = pa[1];
      fb[0] = pb[0], fb[1] = pb[1];
      sm70::mma_m8n8k4(acc, fa, fb);
    }
  }

  __device__ void store(float* c, int m0, int n0, int M, int N, int lane) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = m0 + row0(lane) + sm70::c_row(lane, i);
      const int n = n0 + col0(lane) + sm70::c_col(lane, i);
      if (m < M && n < N) c[(size_t)m * N + n] = acc[i];
    }
  }
};

}  // namespace sm7x::diagnostics
