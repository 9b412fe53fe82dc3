// Turing: two m16n8k8 mmas (left and right 8 columns) per k8 step; A through ldmatrix.
#pragma once
#include "core/mma_sm75.h"
#include "core/warp_tile.cuh"

namespace sm7x {

template <>
struct WarpTile16x16<Sm75> {
  float acc[2][4] = {};

  __device__ void mma(const __half* a, int lda, const __half* bt, int ldb, int lane) {
    uint32_t fa[2];
    sm75::ldmatrix_x2(fa, a + (lane % 16) * lda);
#pragma unroll
    for (int half_n = 0; half_n < 2; ++half_n) {
      const uint32_t fb =
          *reinterpret_cast<const uint32_t*>(bt + (half_n * 8 + sm75::group(lane)) * ldb + sm75::pair_offset(lane));
      sm75::mma_m16n8k8(acc[half_n], fa, fb);
    }
  }

  template <class F>
  __device__ void for_each(int lane, F&& f) {
#pragma unroll
    for (int half_n = 0; half_n < 2; ++half_n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        f(sm75::group(lane) + (i >> 1) * 8, half_n * 8 + sm75::pair_offset(lane) + (i & 1), acc[half_n][i]);
      }
    }
  }
};

}  // namespace sm7x
