// Torch-facing AWQ ops: input checks with the rule that failed, split-K choice, launches.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "core/torch_arch.h"
#include "ops.h"
#include "quantization/awq/awq_gemm.h"

namespace sm7x {
namespace {

void check_packed_weight(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size,
                         int64_t K) {
  TORCH_CHECK_VALUE(group_size == 32 || group_size == 64 || group_size == 128,
                    "awq: group size ", group_size, " is not supported; use 32, 64 or 128");
  TORCH_CHECK_VALUE(K % group_size == 0, "awq: K = ", K, " is not a multiple of the group size ", group_size);
  TORCH_CHECK(qweight.is_cuda() && qweight.scalar_type() == at::kInt && qweight.dim() == 2 &&
                  qweight.size(1) * 8 == K && qweight.is_contiguous(),
              "awq: qweight must be a contiguous int32 [N, K/8] CUDA tensor in the kernel layout, got ",
              qweight.scalar_type(), " ", qweight.sizes());
  const int64_t N = qweight.size(0);
  TORCH_CHECK(scale_zero.is_cuda() && scale_zero.scalar_type() == at::kInt && scale_zero.is_contiguous() &&
                  scale_zero.dim() == 2 && scale_zero.size(0) == K / group_size && scale_zero.size(1) == N,
              "awq: scale_zero must be a contiguous int32 (half2) [K/G, N] = [", K / group_size, ", ", N,
              "] CUDA tensor, got ", scale_zero.scalar_type(), " ", scale_zero.sizes());
  TORCH_CHECK(qweight.device() == scale_zero.device(), "awq: qweight and scale_zero on different devices");
  TORCH_CHECK(N <= INT32_MAX && K <= INT32_MAX, "awq: weight too large");
}

// Each CTA keeps little memory in flight, so small-M GEMMs need many resident CTAs: aim for
// kCtasPerSm per SM, never more splits than k slabs (or 32); deterministic per shape and GPU.
constexpr int64_t kCtasPerSm = 12;
int choose_splits(int64_t M, int64_t N, int64_t K, int device) {
  int sms = 0;
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t tiles = ((M + awq::kTileM - 1) / awq::kTileM) * ((N + awq::kTileN - 1) / awq::kTileN);
  const int64_t slabs = K / awq::kTileK;
  const int64_t wanted = (kCtasPerSm * sms + tiles - 1) / std::max<int64_t>(tiles, 1);
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(slabs, 32)));
}

}  // namespace

torch::Tensor awq_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                       int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                       int64_t split_k) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == at::kHalf && x.dim() == 2,
              "awq_gemm: x must be a 2-D float16 CUDA tensor (SM70/SM75 have no bf16 tensor cores), got ",
              x.scalar_type(), " ", x.sizes());
  const int64_t M = x.size(0), K = x.size(1);
  check_packed_weight(qweight, scale_zero, group_size, K);
  TORCH_CHECK(x.device() == qweight.device(), "awq_gemm: x and qweight on different devices");
  const int64_t N = qweight.size(0);
  if (bias) {
    TORCH_CHECK(bias->is_cuda() && bias->scalar_type() == at::kHalf && bias->dim() == 1 && bias->size(0) == N &&
                    bias->is_contiguous(),
                "awq_gemm: bias must be a contiguous float16 [N = ", N, "] tensor, got ", bias->sizes());
  }
  TORCH_CHECK(M <= INT32_MAX, "awq_gemm: too many rows");

  const c10::cuda::CUDAGuard guard(x.device());
  const ArchPath arch_path = resolve_arch_path_for(x, path, "awq_gemm");
  auto out = torch::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out;
  // The kernel reads x in 16-byte vectors.
  const bool vector_ok = x.stride(1) == 1 && x.stride(0) % 8 == 0 &&
                         reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  const auto x_c = vector_ok ? x : x.contiguous();

  awq::GemmParams p{};
  p.x = reinterpret_cast<const __half*>(x_c.data_ptr<at::Half>());
  p.qweight = reinterpret_cast<const uint32_t*>(qweight.data_ptr<int32_t>());
  p.scale_zero = reinterpret_cast<const __half2*>(scale_zero.data_ptr<int32_t>());
  p.bias = bias ? reinterpret_cast<const __half*>(bias->data_ptr<at::Half>()) : nullptr;
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.M = M, p.N = N, p.K = K, p.lda = x_c.stride(0), p.group_size = group_size;
  const int64_t slabs = K / awq::kTileK;
  const int64_t wanted = split_k > 0 ? std::min<int64_t>(split_k, slabs) : choose_splits(M, N, K, x.get_device());
  p.slabs_per_split = static_cast<int>((slabs + wanted - 1) / wanted);
  p.splits = static_cast<int>((slabs + p.slabs_per_split - 1) / p.slabs_per_split);
  torch::Tensor partial;
  if (p.splits > 1) {
    partial = torch::empty({p.splits, M, N}, x.options().dtype(at::kFloat));
    p.partial = partial.data_ptr<float>();
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_arch_path(arch_path, [&](auto tag) { awq::launch_gemm<decltype(tag)>(p, stream); });
  if (p.splits > 1) awq::launch_splitk_reduce(p.partial, p.bias, p.out, p.splits, p.M, p.N, stream);
  return out;
}

torch::Tensor awq_dequantize(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size) {
  TORCH_CHECK(qweight.dim() == 2, "awq_dequantize: qweight must be [N, K/8], got ", qweight.sizes());
  const int64_t K = qweight.size(1) * 8;
  check_packed_weight(qweight, scale_zero, group_size, K);
  const c10::cuda::CUDAGuard guard(qweight.device());
  auto out = torch::empty({qweight.size(0), K}, qweight.options().dtype(at::kHalf));
  awq::launch_dequantize(reinterpret_cast<const uint32_t*>(qweight.data_ptr<int32_t>()),
                         reinterpret_cast<const __half2*>(scale_zero.data_ptr<int32_t>()),
                         reinterpret_cast<__half*>(out.data_ptr<at::Half>()), qweight.size(0), K, group_size,
                         c10::cuda::getCurrentCUDAStream());
  return out;
}

}  // namespace sm7x
