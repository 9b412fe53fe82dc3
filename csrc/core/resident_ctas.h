// What this GPU holds at once, for launchers that choose by waves: asked once per kernel and process
// (one GPU model per server).
#pragma once
#include <cuda_runtime.h>

#include "core/cuda_check.h"

namespace sm7x {

// CTAs per SM this GPU holds of a kernel launched with kThreads per CTA and no dynamic shared memory.
template <auto kKernel, int kThreads>
int resident_ctas_per_sm() {
  static const int ctas = [] {
    int n = 0;
    SM7X_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kKernel, kThreads, 0));
    return n;
  }();
  return ctas;
}

inline int multiprocessor_count() {
  static const int sms = [] {
    int device = 0, n = 0;
    SM7X_CUDA_CHECK(cudaGetDevice(&device));
    SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n;
  }();
  return sms;
}

// Whether `ctas` CTAs of the kernel run in one wave on this GPU.
template <auto kKernel, int kThreads>
bool fits_one_wave(long long ctas) {
  return ctas <= static_cast<long long>(multiprocessor_count()) * resident_ctas_per_sm<kKernel, kThreads>();
}

}  // namespace sm7x
