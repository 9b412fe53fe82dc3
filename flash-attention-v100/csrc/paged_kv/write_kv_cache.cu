// Arch-neutral (SIMT) paged KV write: one block per token, 16-byte copies when everything is
// 16-byte aligned, else element by element.
#include "core/cuda_check.h"
#include "paged_kv/write_kv_cache.h"

namespace flash_v100 {
namespace {

template <typename Vec>
__global__ void write_kv_cache_kernel(WriteKvCacheParams p) {
  constexpr int kElemsPerVec = sizeof(Vec) / sizeof(__half);
  const int token = blockIdx.x;
  const int64_t slot = p.slot_mapping[token];
  if (slot < 0) return;
  const int64_t block = slot / p.block_size, offset = slot % p.block_size;
  const auto* src_k = reinterpret_cast<const Vec*>(p.key + token * p.key_token_stride);
  const auto* src_v = reinterpret_cast<const Vec*>(p.value + token * p.value_token_stride);
  auto* dst_k = reinterpret_cast<Vec*>(p.key_cache + block * p.key_cache_block_stride + offset * p.row_elems);
  auto* dst_v = reinterpret_cast<Vec*>(p.value_cache + block * p.value_cache_block_stride + offset * p.row_elems);
  for (int i = threadIdx.x; i < p.row_elems / kElemsPerVec; i += blockDim.x) {
    dst_k[i] = src_k[i];
    dst_v[i] = src_v[i];
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

void launch_write_kv_cache(const WriteKvCacheParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return;
  const bool vectorised = p.row_elems % 8 == 0 && p.key_token_stride % 8 == 0 && p.value_token_stride % 8 == 0 &&
                          p.key_cache_block_stride % 8 == 0 && p.value_cache_block_stride % 8 == 0 &&
                          aligned16(p.key) && aligned16(p.value) && aligned16(p.key_cache) &&
                          aligned16(p.value_cache);
  const int threads = 128;
  if (vectorised) {
    write_kv_cache_kernel<uint4><<<p.num_tokens, threads, 0, stream>>>(p);
  } else {
    write_kv_cache_kernel<__half><<<p.num_tokens, threads, 0, stream>>>(p);
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace flash_v100
