// Host side of the mma smoke GEMM: checks inputs, resolves the arch path, launches.
#include "diagnostics/mma_gemm.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/torch_arch.h"
#include "ops.h"

namespace sm7x {

void mma_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out, const std::string& path) {
  TORCH_CHECK(a.is_cuda() && b.is_cuda() && out.is_cuda(), "mma_gemm: a, b and out must be CUDA tensors");
  TORCH_CHECK(a.scalar_type() == at::kHalf && b.scalar_type() == at::kHalf,
              "mma_gemm: a and b must be float16 (SM70/SM75 tensor cores have no bf16), got ", a.scalar_type(),
              " and ", b.scalar_type());
  TORCH_CHECK(out.scalar_type() == at::kFloat, "mma_gemm: out must be float32, got ", out.scalar_type());
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1),
              "mma_gemm: expected a [M, K] and b [N, K], got ", a.sizes(), " and ", b.sizes());
  TORCH_CHECK(out.dim() == 2 && out.size(0) == a.size(0) && out.size(1) == b.size(0) && out.is_contiguous(),
              "mma_gemm: out must be a contiguous [M, N] tensor, got ", out.sizes());
  TORCH_CHECK(a.device() == b.device() && a.device() == out.device(), "mma_gemm: tensors on different devices");
  TORCH_CHECK(a.size(0) <= INT32_MAX && b.size(0) <= INT32_MAX && a.size(1) <= INT32_MAX, "mma_gemm: too large");

  const c10::cuda::CUDAGuard guard(a.device());
  const ArchPath arch_path = resolve_arch_path_for(a, path, "mma_gemm");
  const auto a_c = a.contiguous();
  const auto b_c = b.contiguous();
  const auto* pa = reinterpret_cast<const __half*>(a_c.data_ptr<at::Half>());
  const auto* pb = reinterpret_cast<const __half*>(b_c.data_ptr<at::Half>());
  auto* pc = out.data_ptr<float>();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int M = a.size(0), N = b.size(0), K = a.size(1);
  dispatch_arch_path(arch_path, [&](auto tag) { launch_mma_gemm<decltype(tag)>(pa, pb, pc, M, N, K, stream); });
}

}  // namespace sm7x
