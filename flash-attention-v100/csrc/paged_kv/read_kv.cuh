// One 8-element vector of a token's key and value for one KV head, from a paged cache in vLLM's flash
// layout, widened to 8 halves (shared by the decode and prefill kernels).
#pragma once
#include <cuda_fp16.h>

#include "decode/decode_attention.h"
#include "paged_kv/kv_format.cuh"

namespace flash_v100 {

// vec-th 8 elements of token t of sequence b (t must be below the sequence's keys).
template <class Kv>
__device__ __forceinline__ void read_kv_vec(const DecodeParams& p, int b, int kv_head, int t, int vec, uint4& k,
                                            uint4& v) {
  const int64_t block = p.block_table[b * p.block_table_stride + t / p.block_size];
  const int offset = t % p.block_size;
  const auto* k_cache = static_cast<const typename Kv::Element*>(p.k_cache);
  const auto* v_cache = static_cast<const typename Kv::Element*>(p.v_cache);
  k = Kv::load8(k_cache + block * p.k_block_stride + offset * p.k_token_stride + kv_head * p.k_head_stride + vec * 8);
  v = Kv::load8(v_cache + block * p.v_block_stride + offset * p.v_token_stride + kv_head * p.v_head_stride + vec * 8);
}

}  // namespace flash_v100
