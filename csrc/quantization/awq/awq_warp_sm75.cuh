// Turing fragments of the fused AWQ kernel: m16n8k8, A = 16 weight rows, B = 8 tokens.
// Lane l loads slot l: rows l/4 and l/4 + 8, k segment l%4, which is exactly its A fragment
// (rows group and group + 8, k pair 2*(l%4)) for every k8 step once k is ordered per lane.
#pragma once
#include "core/mma_sm75.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x::awq {

template <int kTokenTiles>
struct AwqWarp<Sm75, kTokenTiles> {
  float acc[kTokenTiles][4] = {};

  __device__ static int slot(int lane) { return lane; }
  __device__ static int x_token(int lane) { return sm75::group(lane); }
  __device__ static int x_lane(int token, int segment) { return 4 * token + segment; }

  template <class XFragment>
  __device__ void tile(const uint4 (&w)[2], const __half2 (&sz)[2], XFragment&& x) {
#pragma unroll
    for (int v = 0; v < 4; ++v) {  // 8 k per word: k8 steps 4v .. 4v+3
      __half2 lo[4], hi[4];
      dequant_int4x8(word(w[0], v), sz[0], lo);
      dequant_int4x8(word(w[1], v), sz[1], hi);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t) {
        const uint4 xv = x(t, v);
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const uint32_t a[2] = {bits(lo[s]), bits(hi[s])};
          sm75::mma_m16n8k8(acc[t], a, word(xv, s));
        }
      }
    }
  }

  __device__ void finish(int) {}

  template <class F>
  __device__ void for_each(int lane, F&& f) const {
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        f(sm75::group(lane) + (i >> 1) * 8, t * kTokensPerMma + sm75::pair_offset(lane) + (i & 1), acc[t][i]);
      }
    }
  }
};

}  // namespace sm7x::awq
