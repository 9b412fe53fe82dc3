// AWQ W4A16 GEMM: out[M, N] (fp16) = x[M, K] (fp16) * W[K, N], W in the kernel layout made at load
// time by vllm_sm7x/quantization/awq_format.py:
//   qweight    [N, K/8] int32: 8 consecutive k of column n per word (nibble order in core/int4.cuh)
//   scale_zero [K/G, N] half2: {scale, -zero * scale} per group and column
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/arch.h"

namespace sm7x::awq {

// Tile of the fused kernel: 16 rows x 64 columns per CTA (4 warps x 16x16), k slabs of 32, which
// divides every supported group size, so a slab never straddles two groups.
constexpr int kTileM = 16;
constexpr int kTileN = 64;
constexpr int kTileK = 32;
constexpr int kThreads = 128;

struct GemmParams {
  const __half* x;             // [M, K], row stride lda (halves), 16-byte aligned rows
  const uint32_t* qweight;     // [N, K/8]
  const __half2* scale_zero;   // [K/G, N]
  const __half* bias;          // [N] or nullptr
  __half* out;                 // [M, N], written when splits == 1
  float* partial;              // [splits, M, N], written when splits > 1
  int M, N, K, lda, group_size;
  int splits, slabs_per_split;
};

template <class ArchTag>
void launch_gemm(const GemmParams& p, cudaStream_t stream);
template <>
void launch_gemm<Sm70>(const GemmParams& p, cudaStream_t stream);
template <>
void launch_gemm<Sm75>(const GemmParams& p, cudaStream_t stream);

// out = fp16(sum over splits of partial + bias).
void launch_splitk_reduce(const float* partial, const __half* bias, __half* out, int splits, int M, int N,
                          cudaStream_t stream);

// out[N, K] (fp16) = dequantised weights (for the large-M path: dequantise, then cuBLAS).
void launch_dequantize(const uint32_t* qweight, const __half2* scale_zero, __half* out, int N, int K,
                       int group_size, cudaStream_t stream);

}  // namespace sm7x::awq
