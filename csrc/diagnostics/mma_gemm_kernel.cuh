// Device code of the mma smoke GEMM. Each block is one warp and computes a 16x16 tile of C through
// the arch's WarpTile16x16 (core/warp_tile_sm70.cuh / core/warp_tile_sm75.cuh).
#pragma once
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "core/warp_tile.cuh"
#include "diagnostics/mma_gemm.h"

namespace sm7x::diagnostics {

constexpr int kTileM = kWarpTileM;
constexpr int kTileN = kWarpTileN;
constexpr int kTileK = kWarpTileK;
// Row stride of the slabs in halves: 16 bytes of padding keeps every row 16-byte aligned (ldmatrix).
constexpr int kSlabStride = kTileK + 8;

template <class ArchTag>
__global__ void __launch_bounds__(32) mma_gemm_kernel(const __half* __restrict__ a, const __half* __restrict__ b,
                                                      float* __restrict__ c, int M, int N, int K) {
  __shared__ __align__(16) __half slab_a[kTileM][kSlabStride];
  __shared__ __align__(16) __half slab_b[kTileN][kSlabStride];
  const int lane = threadIdx.x;
  const int m0 = blockIdx.y * kTileM;
  const int n0 = blockIdx.x * kTileN;

  WarpTile16x16<ArchTag> tile;
  for (int k0 = 0; k0 < K; k0 += kTileK) {
    // Zero-filled edges make any M, N, K valid.
    for (int e = lane; e < kTileM * kTileK; e += 32) {
      const int r = e / kTileK, k = k0 + e % kTileK;
      slab_a[r][e % kTileK] = (m0 + r < M && k < K) ? a[(size_t)(m0 + r) * K + k] : __float2half(0.f);
      slab_b[r][e % kTileK] = (n0 + r < N && k < K) ? b[(size_t)(n0 + r) * K + k] : __float2half(0.f);
    }
    __syncwarp();
    tile.mma(&slab_a[0][0], kSlabStride, &slab_b[0][0], kSlabStride, lane);
    __syncwarp();
  }
  tile.for_each(lane, [&](int r, int col, float v) {
    if (m0 + r < M && n0 + col < N) c[(size_t)(m0 + r) * N + n0 + col] = v;
  });
}

}  // namespace sm7x::diagnostics

namespace sm7x {

template <class ArchTag>
void launch_mma_gemm(const __half* a, const __half* b, float* c, int M, int N, int K, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  constexpr int kTileM = diagnostics::kTileM, kTileN = diagnostics::kTileN;
  const dim3 grid((N + kTileN - 1) / kTileN, (M + kTileM - 1) / kTileM);
  diagnostics::mma_gemm_kernel<ArchTag><<<grid, 32, 0, stream>>>(a, b, c, M, N, K);
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x
