// Writes new keys/values into a paged KV cache in vLLM's flash layout,
// cache[num_blocks, block_size, num_kv_heads, head_size], at the slots of slot_mapping.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "paged_kv/kv_format.h"

namespace flash_v100 {

struct WriteKvCacheParams {
  const __half* key;           // [num_tokens, num_kv_heads, head_size]; heads x dims contiguous
  const __half* value;         // same shape as key
  void* key_cache;             // [num_blocks, block_size, num_kv_heads, head_size]; head_size contiguous,
  void* value_cache;           // elements as kv_format says
  KvFormat kv_format;
  float k_scale, v_scale;      // quantized caches store value / scale
  const int64_t* slot_mapping; // [num_tokens]; slot = block * block_size + offset; negative = padding, skipped
  int64_t num_slots;           // num_blocks * block_size: slots at or past it are skipped too (never written)
  int64_t key_token_stride;    // in elements
  int64_t value_token_stride;
  int64_t key_cache_strides[3];    // block, token, head (in cache elements)
  int64_t value_cache_strides[3];
  int num_tokens;              // slot_mapping's length (key may hold more rows: CUDA-graph padding)
  int num_heads;
  int head_size;
  int block_size;
};

void launch_write_kv_cache(const WriteKvCacheParams& params, cudaStream_t stream);

}  // namespace flash_v100
