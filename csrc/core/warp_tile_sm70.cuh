// Volta: the four quad pairs each own one 8x8 quarter of the tile; a k8 step is two m8n8k4 mmas.
#pragma once
#include "core/mma_sm70.h"
#include "core/warp_tile.cuh"

namespace sm7x {

template <>
struct WarpTile16x16<Sm70> {
  float acc[8] = {};

  __device__ static int row0(int lane) { return (sm70::quad_pair(lane) & 1) * 8; }
  __device__ static int col0(int lane) { return (sm70::quad_pair(lane) >> 1) * 8; }

  __device__ void mma(const __half* a, int lda, const __half* bt, int ldb, int lane) {
    const auto* pa = reinterpret_cast<const uint2*>(a + (row0(lane) + sm70::a_row(lane)) * lda);
    const auto* pb = reinterpret_cast<const uint2*>(bt + (col0(lane) + sm70::b_col(lane)) * ldb);
#pragma unroll
    for (int half_k = 0; half_k < 2; ++half_k) {
      const uint2 va = pa[half_k], vb = pb[half_k];  // k = 4*half_k .. +3
      const uint32_t fa[2] = {va.x, va.y}, fb[2] = {vb.x, vb.y};
      sm70::mma_m8n8k4(acc, fa, fb);
    }
  }

  template <class F>
  __device__ void for_each(int lane, F&& f) {
#pragma unroll
    for (int i = 0; i < 8; ++i) f(row0(lane) + sm70::c_row(lane, i), col0(lane) + sm70::c_col(lane, i), acc[i]);
  }
};

}  // namespace sm7x
