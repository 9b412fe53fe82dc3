// A small fp16 GEMM (C = A * B^T, fp32 out) run through each arch's mma.sync wrapper. It proves the
// wrappers and their fragment layouts against torch, and `vllm-sm7x doctor` runs it on the user's GPU.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/arch.h"

namespace sm7x {

// a: [M, K] row-major, b: [N, K] row-major, c: [M, N] row-major; all device pointers. Defined in
// mma_gemm_kernel.cuh, instantiated for Sm70 and Sm75 by mma_gemm_sm70.cu / mma_gemm_sm75.cu, each compiled
// only for the archs that can run it.
template <class ArchTag>
void launch_mma_gemm(const __half* a, const __half* b, float* c, int M, int N, int K, cudaStream_t stream);

}  // namespace sm7x
