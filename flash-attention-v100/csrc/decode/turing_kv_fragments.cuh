// The Turing decode kernels' stage loads (decode_mma8_sm75.cu, decode_pairs_sm75.cu) and the V^T fragment
// built from them: K and V read from the cache straight into the order their m16n8k8 fragments take, in
// 16-byte loads, coalesced over 64- or 128-byte runs of one key; zeros past the CTA's last key.
#pragma once
#include <cuda_fp16.h>

#include "decode/decode_cta.cuh"
#include "decode/decode_mma8.cuh"
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

// V^T's A fragment for m tile (c, i) of O^T += V^T P^T, from one key pair's loads (v[e]: key 2q + e):
// a[0] = dim c*64 + g*8 + i (row g), a[1] = that + 4 (row g + 8), each as the pair's two halves (keys 2q, 2q + 1).
template <int kChunks64>
__device__ __forceinline__ void v_transposed_fragment(uint32_t (&a)[2], const uint4 (&v)[2][kChunks64], int c, int i) {
  a[0] = pair_halves(word(v[0][c], i / 2), word(v[1][c], i / 2), i);
  a[1] = pair_halves(word(v[0][c], 2 + i / 2), word(v[1][c], 2 + i / 2), i);
}

}  // namespace flash_v100
