// Arch-neutral (SIMT) paged KV write: one CTA per token, 8 elements per step when everything is
// 16-byte aligned, else element by element; the cache format (kv_format.cuh) does the stores.
#include "core/cuda_check.h"
#include "paged_kv/kv_format.cuh"
#include "paged_kv/write_kv_cache.h"

namespace flash_v100 {
namespace {

template <class Kv, int kVec>  // kVec: elements per step, 8 or 1
__global__ void write_kv_cache_kernel(WriteKvCacheParams p) {
  const int token = blockIdx.x;
  const int64_t slot = p.slot_mapping[token];
  if (slot < 0 || slot >= p.num_slots) return;  // padding, or a slot the cache does not have
  const int64_t block = slot / p.block_size, offset = slot % p.block_size;
  auto* key_cache = static_cast<typename Kv::Element*>(p.key_cache) + block * p.key_cache_strides[0] +
                    offset * p.key_cache_strides[1];
  auto* value_cache = static_cast<typename Kv::Element*>(p.value_cache) + block * p.value_cache_strides[0] +
                      offset * p.value_cache_strides[1];
  const __half* key = p.key + token * p.key_token_stride;
  const __half* value = p.value + token * p.value_token_stride;
  const int steps_per_head = p.head_size / kVec;
  for (int i = threadIdx.x; i < p.num_heads * steps_per_head; i += blockDim.x) {
    const int head = i / steps_per_head, dim = i % steps_per_head * kVec, src = head * p.head_size + dim;
    auto* k_dst = key_cache + head * p.key_cache_strides[2] + dim;
    auto* v_dst = value_cache + head * p.value_cache_strides[2] + dim;
    if constexpr (kVec == 8) {
      Kv::store8(k_dst, *reinterpret_cast<const uint4*>(key + src), p.k_scale);
      Kv::store8(v_dst, *reinterpret_cast<const uint4*>(value + src), p.v_scale);
    } else {
      Kv::store1(k_dst, key[src], p.k_scale);
      Kv::store1(v_dst, value[src], p.v_scale);
    }
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

bool multiples_of_8(const int64_t* strides) { return strides[0] % 8 == 0 && strides[1] % 8 == 0 && strides[2] % 8 == 0; }

}  // namespace

void launch_write_kv_cache(const WriteKvCacheParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return;
  // 8 halves in (16 bytes), 8 elements out: 16 bytes (fp16) or 8 (fp8), aligned by the same rule.
  const bool vectorised = p.head_size % 8 == 0 && p.key_token_stride % 8 == 0 && p.value_token_stride % 8 == 0 &&
                          multiples_of_8(p.key_cache_strides) && multiples_of_8(p.value_cache_strides) &&
                          aligned16(p.key) && aligned16(p.value) && aligned16(p.key_cache) &&
                          aligned16(p.value_cache);
  const int threads = 128;
  dispatch_kv_format(p.kv_format, [&](auto kv) {
    if (vectorised) {
      write_kv_cache_kernel<decltype(kv), 8><<<p.num_tokens, threads, 0, stream>>>(p);
    } else {
      write_kv_cache_kernel<decltype(kv), 1><<<p.num_tokens, threads, 0, stream>>>(p);
    }
    SM7X_CHECK_LAUNCH();
  });
}

}  // namespace flash_v100
