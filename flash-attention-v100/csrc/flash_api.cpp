// Torch ops of flash_attn_v100._C (namespace flash_attn_v100): input checks with clear messages,
// then the kernels' launchers. Fake implementations live in flash_attn_v100/flash_attn_interface.py.
#include <Python.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/all.h>
#include <torch/library.h>

#include <string>

#include "paged_kv/write_kv_cache.h"

namespace flash_v100 {

using TensorPtrs = std::initializer_list<const torch::Tensor*>;

std::string build_info() {
  return std::string("{\"cuda_archs\": \"") + SM7X_CUDA_ARCHS_STR + "\", \"cuda_runtime\": " +
         std::to_string(CUDART_VERSION) + ", \"paths\": [\"simt\"]}";
}

void write_kv_cache(const torch::Tensor& key, const torch::Tensor& value, torch::Tensor& key_cache,
                    torch::Tensor& value_cache, const torch::Tensor& slot_mapping) {
  for (const torch::Tensor* t : TensorPtrs{&key, &value, &key_cache, &value_cache, &slot_mapping}) {
    TORCH_CHECK(t->is_cuda() && t->device() == key.device(), "write_kv_cache: all tensors must be on ",
                key.device());
  }
  for (const torch::Tensor* t : TensorPtrs{&key, &value, &key_cache, &value_cache}) {
    TORCH_CHECK(t->scalar_type() == at::kHalf, "write_kv_cache: SM70/SM75 KV caches are float16, got ",
                t->scalar_type());
  }
  TORCH_CHECK(key.dim() == 3 && value.sizes() == key.sizes(),
              "write_kv_cache: key and value must be [num_tokens, num_kv_heads, head_size], got ", key.sizes(),
              " and ", value.sizes());
  TORCH_CHECK(key_cache.dim() == 4 && value_cache.sizes() == key_cache.sizes(),
              "write_kv_cache: caches must be [num_blocks, block_size, num_kv_heads, head_size], got ",
              key_cache.sizes(), " and ", value_cache.sizes());
  TORCH_CHECK(key_cache.size(2) == key.size(1) && key_cache.size(3) == key.size(2),
              "write_kv_cache: cache heads/head_size ", key_cache.sizes(), " do not match key ", key.sizes());
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.dim() == 1 &&
                  slot_mapping.size(0) == key.size(0) && slot_mapping.is_contiguous(),
              "write_kv_cache: slot_mapping must be a contiguous int64 [num_tokens] tensor");
  const int64_t row_elems = key.size(1) * key.size(2);
  for (const auto* t : {&key, &value}) {
    TORCH_CHECK(t->stride(2) == 1 && t->stride(1) == t->size(2),
                "write_kv_cache: heads x head_size of each token must be contiguous");
  }
  for (const torch::Tensor* t : TensorPtrs{&key_cache, &value_cache}) {
    TORCH_CHECK(t->stride(3) == 1 && t->stride(2) == t->size(3) && t->stride(1) == row_elems,
                "write_kv_cache: each cache block must be contiguous [block_size, num_kv_heads, head_size]");
  }

  const c10::cuda::CUDAGuard guard(key.device());
  WriteKvCacheParams p{};
  p.key = reinterpret_cast<const __half*>(key.data_ptr<at::Half>());
  p.value = reinterpret_cast<const __half*>(value.data_ptr<at::Half>());
  p.key_cache = reinterpret_cast<__half*>(key_cache.data_ptr<at::Half>());
  p.value_cache = reinterpret_cast<__half*>(value_cache.data_ptr<at::Half>());
  p.slot_mapping = slot_mapping.data_ptr<int64_t>();
  p.key_token_stride = key.stride(0);
  p.value_token_stride = value.stride(0);
  p.key_cache_block_stride = key_cache.stride(0);
  p.value_cache_block_stride = value_cache.stride(0);
  p.num_tokens = key.size(0);
  p.row_elems = row_elems;
  p.block_size = key_cache.size(1);
  launch_write_kv_cache(p, c10::cuda::getCurrentCUDAStream());
}

}  // namespace flash_v100

TORCH_LIBRARY(flash_attn_v100, m) {
  m.def("build_info() -> str");
  m.impl("build_info", &flash_v100::build_info);
  m.def("write_kv_cache(Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, "
        "Tensor slot_mapping) -> ()");
  m.impl("write_kv_cache", torch::kCUDA, &flash_v100::write_kv_cache);
}

PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "flash-attn-v100 CUDA kernels", -1, nullptr};
  return PyModule_Create(&module);
}
