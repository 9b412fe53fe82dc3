// One 8-element vector of a token's key and value for one KV head, from a paged cache in vLLM's flash
// layout, widened to 8 halves (shared by the decode and prefill kernels).
#pragma once
#include <cuda_fp16.h>

#include "decode/decode_attention.h"
#include "paged_kv/kv_format.cuh"

namespace flash_v100 {

// Where token t of sequence b sits in the paged caches (t must be below the sequence's keys).
struct KvSlot {
  int64_t block;
  int offset;
};
// Key positions and block sizes are never negative: unsigned division takes about half the instructions.
__device__ __forceinline__ KvSlot kv_slot(const DecodeParams& p, int b, int t) {
  const unsigned block = static_cast<unsigned>(t) / static_cast<unsigned>(p.block_size);
  return {p.block_table[b * p.block_table_stride + block], t - static_cast<int>(block) * p.block_size};
}

// The first element of the value at `slot` for one KV head (the decode kernel that shares value rows'
// addresses between lanes).
template <class Kv>
__device__ __forceinline__ const typename Kv::Element* v_row(const DecodeParams& p, KvSlot slot, int kv_head) {
  return static_cast<const typename Kv::Element*>(p.v_cache) + slot.block * p.v_block_stride +
         slot.offset * p.v_token_stride + kv_head * p.v_head_stride;
}

// vec-th 8 elements of the key (read_k_vec) or value (read_v_vec) at `slot` for one KV head.
template <class Kv>
__device__ __forceinline__ uint4 read_k_vec(const DecodeParams& p, KvSlot slot, int kv_head, int vec) {
  const auto* cache = static_cast<const typename Kv::Element*>(p.k_cache);
  return Kv::load8(cache + slot.block * p.k_block_stride + slot.offset * p.k_token_stride + kv_head * p.k_head_stride +
                   vec * 8);
}
template <class Kv>
__device__ __forceinline__ uint4 read_v_vec(const DecodeParams& p, KvSlot slot, int kv_head, int vec) {
  return Kv::load8(v_row<Kv>(p, slot, kv_head) + vec * 8);
}

// Both at once: vec-th 8 elements of token t's key and value.
template <class Kv>
__device__ __forceinline__ void read_kv_vec(const DecodeParams& p, int b, int kv_head, int t, int vec, uint4& k,
                                            uint4& v) {
  const KvSlot slot = kv_slot(p, b, t);
  k = read_k_vec<Kv>(p, slot, kv_head, vec);
  v = read_v_vec<Kv>(p, slot, kv_head, vec);
}

}  // namespace flash_v100
