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

// One thread per packed slot: 32 consecutive k of one column, written as 64 contiguous bytes.
__global__ void dequantize_kernel(const uint4* __restrict__ qweight, const __half2* __restrict__ scale_zero,
                                  __half* __restrict__ out, int N, int K, int group_size, int sz_stride,
                                  size_t slots) {
  const size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= slots) return;
  const int k_tiles = (K + kTileK - 1) / kTileK;
  const int slot = index % kSlots, half_index = index / kSlots % 2;
  const size_t tile = index / (2 * kSlots);
  const int n = tile / k_tiles * kTileRows + half_index * 8 + slot / 4;
  const int k = tile % k_tiles * kTileK + slot % 4 * kSlotK;
  if (n >= N || k >= K) return;  // padding
  const uint4 q = qweight[index];
  const __half2 sz = scale_zero[(size_t)(k / group_size) * sz_stride + n];
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
  uint4* dst = reinterpret_cast<uint4*>(out + (size_t)n * K + k);
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    __align__(16) __half2 w[4];
    dequant_int4x8(words[v], sz, w);
    dst[v] = *reinterpret_cast<uint4*>(w);
  }
}

}  // namespace

void launch_splitk_reduce(const float* partial, const __half* bias, __half* out, int splits, int M, int N,
                          cudaStream_t stream) {
  const size_t total = (size_t)M * N;
  if (total == 0) return;
  splitk_reduce_kernel<<<(total + 255) / 256, 256, 0, stream>>>(partial, bias, out, splits, M, N);
  SM7X_CHECK_LAUNCH();
}

void launch_dequantize(const uint4* qweight, const __half2* scale_zero, __half* out, int N, int K, int group_size,
                       int scale_zero_stride, cudaStream_t stream) {
  const size_t slots = (size_t)((N + kTileRows - 1) / kTileRows) * ((K + kTileK - 1) / kTileK) * 2 * kSlots;
  if (slots == 0) return;
  dequantize_kernel<<<(slots + 255) / 256, 256, 0, stream>>>(qweight, scale_zero, out, N, K, group_size,
                                                             scale_zero_stride, slots);
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x::awq
