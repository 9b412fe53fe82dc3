// Torch-facing entry points of vllm_sm7x._C (schemas in torch_bindings.cpp).
#pragma once
#include <torch/all.h>

#include <optional>
#include <string>

namespace sm7x {

// JSON: the archs this binary was compiled for and the arch paths it carries.
std::string build_info();

// out[M, N] (fp32) = a[M, K] (fp16) * b[N, K]^T through the mma.sync wrapper of `path`.
void mma_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out, const std::string& path);

// AWQ W4A16 (weights in the kernel layout of vllm_sm7x/quantization/awq_format.py). split_k <= 0: automatic.
torch::Tensor awq_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                       int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                       int64_t split_k);
torch::Tensor awq_dequantize(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size);

}  // namespace sm7x
