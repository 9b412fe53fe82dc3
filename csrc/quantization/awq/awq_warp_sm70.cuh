// Volta fragments of the fused AWQ kernel: m8n8k4, A = 8 weight rows, B = 8 tokens, per quad pair.
// The four quad pairs take the four k segments of a packed tile (quad pair q loads the slots of
// segment q), each computes all 16 rows x 8 tokens over its 32 k, and finish() sums the quad
// pairs with two shuffles, so every lane of a quad pair shares one k range as m8n8k4 requires.
#pragma once
#include "core/mma_sm70.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x::awq {

template <int kTokenTiles>
struct AwqWarp<Sm70, kTokenTiles> {
  float acc[kTokenTiles][2][8] = {};  // [token block][row half h][m8n8 accumulator]

  // Lane's A row is sm70::a_row within its quad pair; its B column (token) is sm70::b_col.
  __device__ static int slot(int lane) { return 4 * sm70::a_row(lane) + sm70::quad_pair(lane); }
  __device__ static int x_token(int lane) { return sm70::b_col(lane); }
  // The lane whose x fragment is token's k segment (inverse of x_token and slot % 4).
  __device__ static int x_lane(int token, int segment) { return (token & 3) | (segment << 2) | ((token >> 2) << 4); }

  template <class XFragment>
  __device__ void tile(const uint4 (&w)[2], const __half2 (&sz)[2], XFragment&& x) {
#pragma unroll
    for (int v = 0; v < 4; ++v) {  // 8 k per word: k4 steps 2v, 2v+1
      __half2 deq[2][4];
      dequant_int4x8(word(w[0], v), sz[0], deq[0]);
      dequant_int4x8(word(w[1], v), sz[1], deq[1]);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t) {
        const uint4 xv = x(t, v);
#pragma unroll
        for (int s = 0; s < 2; ++s) {
          const uint32_t b[2] = {word(xv, 2 * s), word(xv, 2 * s + 1)};
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint32_t a[2] = {bits(deq[h][2 * s]), bits(deq[h][2 * s + 1])};
            sm70::mma_m8n8k4(acc[t][h], a, b);
          }
        }
      }
    }
  }

  // Quad pair q is lanes 4q..4q+3 and 4q+16..4q+19: lanes 4 and 8 apart hold the same elements.
  __device__ void finish(int) {
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          acc[t][h][i] += __shfl_xor_sync(0xffffffffu, acc[t][h][i], 4);
          acc[t][h][i] += __shfl_xor_sync(0xffffffffu, acc[t][h][i], 8);
        }
      }
    }
  }

  template <class F>
  __device__ void for_each(int lane, F&& f) const {
    if (sm70::quad_pair(lane) != 0) return;  // after finish() every quad pair holds the same sums
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          f(8 * h + sm70::c_row(lane, i), t * kTokensPerMma + sm70::c_col(lane, i), acc[t][h][i]);
        }
      }
    }
  }
};

}  // namespace sm7x::awq
