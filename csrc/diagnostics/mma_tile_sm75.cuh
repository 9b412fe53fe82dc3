// Turing warp tile: two m16n8k8 products (left and right 8 columns) per k8 slab; A comes in through
// ldmatrix, B through plain 32-bit shared loads.
#pragma once
#include "core/mma_sm75.h"
#include "diagnostics/mma_gemm_kernel.cuh"

namespace sm7x::diagnostics {

template <>
struct WarpTile<Sm75> {
  float acc[2][4] = {};

  __device__ void mma(const __half (*slab_a)[kSlabStride], const __half (*slab_b)[kSlabStride], int lane) {
    uint32_t fa[2];
    sm75::ldmatrix_x2(fa, &slab_a[lane % 16][0]);
#pragma unroll
    for (int half_n = 0; half_n < 2; ++half_n) {
      const uint32_t fb = *reinterpret_cast<const uint32_t*>(
          &slab_b[half_n * 8 + sm75::group(lane)][sm75::pair_offset(lane)]);
      sm75::mma_m16n8k8(acc[half_n], fa, fb);
    }
  }

  __device__ void store(float* c, int m0, int n0, int M, int N, int lane) const {
#pragma unroll
    for (int half_n = 0; half_n < 2; ++half_n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int m = m0 + sm75::group(lane) + (i >> 1) * 8;
        const int n = n0 + half_n * 8 + sm75::pair_offset(lane) + (i & 1);
        if (m < M && n < N) c[(size_t)m * N + n] = acc[half_n][i];
      }
    }
  }
};

}  // namespace sm7x::diagnostics
