// Torch-facing entry points of vllm_sm7x._C (schemas in torch_bindings.cpp).
#pragma once
#include <torch/all.h>

#include <string>

namespace sm7x {

// JSON: the archs this binary was compiled for and the arch paths it carries.
std::string build_info();

// out[M, N] (fp32) = a[M, K] (fp16) * b[N, K]^T through the mma.sync wrapper of `path`.
void mma_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out, const std::string& path);

}  // namespace sm7x
