// Arch-neutral AWQ kernels: the split-K reduction and whole-matrix dequantisation.
#include "core/cuda_check.h"
#include "core/int4.cuh"
#include "quantization/awq/awq_gemm.h"

namespace sm7x::awq {
namespace {

__global__ void splitk_reduce_kernel(const float* __restrict__ partial, const __half* __restrict__ bias,
                                     __half* __restrict__ out, int splits, int M, int N) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t total = (size_t)M * N;
  if (i >= total) return;
  float sum = bias ? __half2float(bias[i % N]) : 0.f;
  for (int s = 0; s < splits; ++s) sum += partial[s * total + i];
  out[i] = __float2half_rn(sum);
}

__global__ void dequantize_kernel(const uint32_t* __restrict__ qweight, const __half2* __restrict__ scale_zero,
                                  __half* __restrict__ out, int N, int K, int group_size) {
  const size_t word = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int words_per_row = K / 8;
  if (word >= (size_t)N * words_per_row) return;
  const int n = word / words_per_row, k = word % words_per_row * 8;
  __align__(16) __half2 w[4];
  dequant_int4x8(qweight[word], scale_zero[(size_t)(k / group_size) * N + n], w);
  *reinterpret_cast<uint4*>(out + (size_t)n * K + k) = *reinterpret_cast<uint4*>(w);
}

}  // namespace

void launch_splitk_reduce(const float* partial, const __half* bias, __half* out, int splits, int M, int N,
                          cudaStream_t stream) {
  const size_t total = (size_t)M * N;
  if (total == 0) return;
  splitk_reduce_kernel<<<(total + 255) / 256, 256, 0, stream>>>(partial, bias, out, splits, M, N);
  SM7X_CHECK_LAUNCH();
}

void launch_dequantize(const uint32_t* qweight, const __half2* scale_zero, __half* out, int N, int K,
                       int group_size, cudaStream_t stream) {
  const size_t words = (size_t)N * (K / 8);
  if (words == 0) return;
  dequantize_kernel<<<(words + 255) / 256, 256, 0, stream>>>(qweight, scale_zero, out, N, K, group_size);
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x::awq
