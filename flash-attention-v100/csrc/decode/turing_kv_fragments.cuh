// The stage loads of the Turing decode kernels (decode_mma8_sm75.cu, decode_pairs_sm75.cu): K and V read
// from the cache straight into the order their m16n8k8 fragments take, in 16-byte loads, coalesced over
// 64- or 128-byte runs of one key; zeros past the CTA's last key.
#pragma once
#include <cuda_fp16.h>

#include "decode/decode_cta.cuh"
#include "paged_kv/read_kv.cuh"

namespace flash_v100 {

// K of key t0 + 8h + g (h < kKeyTiles), its 8-dim vectors first_vec + c*4 + q (lane quad member q holds 8
// consecutive dims of each 32, so one load feeds four k steps of S = Q K^T).
template <class Kv, int kKeyTiles, int kChunks32>
__device__ __forceinline__ void fetch_k_fragments(uint4 (&k)[kKeyTiles][kChunks32], const DecodeParams& p,
                                                  const DecodeCta& cta, int t0, int first_vec, int g, int q) {
#pragma unroll
  for (int h = 0; h < kKeyTiles; ++h) {
    const int t = t0 + 8 * h + g;
    const bool in_range = t < cta.t_end;
    const KvSlot slot = in_range ? kv_slot(p, cta.b, t) : KvSlot{0, 0};
#pragma unroll
    for (int c = 0; c < kChunks32; ++c) {
      k[h][c] = in_range ? read_k_vec<Kv>(p, slot, cta.kv_head, first_vec + c * 4 + q) : make_uint4(0, 0, 0, 0);
    }
  }
}

// V of keys t0 + 8h + 2q + e (e < 2: the two keys one A fragment of V^T pairs), its 8-dim vectors
// first_vec + c*8 + g.
template <class Kv, int kKeyTiles, int kChunks64>
__device__ __forceinline__ void fetch_v_fragments(uint4 (&v)[kKeyTiles][2][kChunks64], const DecodeParams& p,
                                                  const DecodeCta& cta, int t0, int first_vec, int g, int q) {
#pragma unroll
  for (int h = 0; h < kKeyTiles; ++h) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int t = t0 + 8 * h + 2 * q + e;
      const bool in_range = t < cta.t_end;
      const KvSlot slot = in_range ? kv_slot(p, cta.b, t) : KvSlot{0, 0};
#pragma unroll
      for (int c = 0; c < kChunks64; ++c) {
        v[h][e][c] = in_range ? read_v_vec<Kv>(p, slot, cta.kv_head, first_vec + c * 8 + g) : make_uint4(0, 0, 0, 0);
      }
    }
  }
}

}  // namespace flash_v100
