// Emulating a card's occupancy on a newer GPU: the H200 fits 228 KB of shared memory and 2048 threads
// per SM, a T4 64 KB and 1024, so a kernel that a T4 holds once per SM runs three times per SM here
// and hides latency the real card cannot. Under the emulation switch the launchers add dynamic
// shared memory (unused) until this GPU holds no more CTAs per SM than the emulated card would.
// The card's count comes from its shared memory, threads, CTA slots and registers; registers are
// those of the binary running here (sm_90), close to but not the sm_70/sm_75 build's count.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "core/arch.h"
#include "core/cuda_check.h"

namespace sm7x {

struct CardLimits {
  int shared_bytes_per_sm, max_threads_per_sm, max_ctas_per_sm;
};

template <class ArchTag>
constexpr CardLimits card_limits() {
  return {ArchTag::kSharedBytesPerSm, ArchTag::kMaxThreadsPerSm, ArchTag::kMaxCtasPerSm};
}
// The card of a path: V100 for sm70, Turing for sm75.
constexpr CardLimits card_limits(ArchPath path) {
  return path == ArchPath::kSm70 ? card_limits<Sm70>() : card_limits<Sm75>();
}

// CTAs per SM the card holds of a kernel with these resources.
inline int card_ctas_per_sm(const CardLimits& card, int threads, int static_shared_bytes, int registers_per_thread) {
  const int warps = (threads + 31) / 32;
  const int warp_registers =
      (registers_per_thread * 32 + kRegisterUnitPerWarp - 1) / kRegisterUnitPerWarp * kRegisterUnitPerWarp;
  int ctas = std::min(card.max_ctas_per_sm, card.max_threads_per_sm / (warps * 32));
  if (warp_registers > 0) ctas = std::min(ctas, kRegistersPerSm / (warp_registers * warps));
  if (static_shared_bytes > 0) ctas = std::min(ctas, card.shared_bytes_per_sm / static_shared_bytes);
  return std::max(ctas, 1);
}

struct EmulatedOccupancy {
  int card_ctas;  // CTAs per SM the card would hold
  int padding;    // dynamic shared memory bytes that hold this GPU to at most that many
};

// For `kernel` launched with `threads` per CTA and `dynamic_bytes` of its own dynamic shared memory
// (the padding comes on top); raises the kernel's dynamic shared memory limit where it pads. Cached
// per (card, kernel, threads, dynamic bytes, device).
inline EmulatedOccupancy emulated_occupancy(const CardLimits& card, const void* kernel, int threads,
                                            int dynamic_bytes = 0) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, int, int, int>, EmulatedOccupancy> cache;
  int device = 0;
  SM7X_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(card.shared_bytes_per_sm, kernel, threads, dynamic_bytes, device);
  const auto found = cache.find(key);
  if (found != cache.end()) return found->second;

  cudaFuncAttributes attributes{};
  SM7X_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  const int own_bytes = static_cast<int>(attributes.sharedSizeBytes) + dynamic_bytes;
  const int target = card_ctas_per_sm(card, threads, own_bytes, attributes.numRegs);
  auto resident = [&](int padding) {
    int ctas = 0;
    SM7X_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, threads, dynamic_bytes + padding));
    return ctas;
  };
  int padding = 0;
  if (resident(0) > target) {
    int per_sm = 0, per_block_optin = 0;
    SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&per_block_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    // The limit is the kernel's, shared by every card emulated in this process: raise it to the most
    // and leave it there (lowering it to one card's padding would fail the other's launches).
    const int most = per_block_optin - own_bytes;  // padding on top of the kernel's own
    SM7X_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         per_block_optin - static_cast<int>(attributes.sharedSizeBytes)));
    // All of the SM's unified memory as shared memory, so the driver's carveout choice cannot hold
    // fewer CTAs than computed here (it also leaves an L1 near the cards' 32 KB).
    SM7X_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         cudaSharedmemCarveoutMaxShared));
    // The smallest padding that brings this GPU down to the target (residency falls as padding grows).
    int low = 0, high = std::min(most, per_sm / target);
    while (low < high) {
      const int mid = (low + high) / 2;
      if (resident(mid) <= target) {
        high = mid;
      } else {
        low = mid + 1;
      }
    }
    padding = low;
  }
  return cache.emplace(key, EmulatedOccupancy{target, padding}).first->second;
}

// The padding to launch `kernel` with, beyond its own dynamic shared memory: none natively
// (card == nullptr).
inline int emulated_occupancy_padding(const CardLimits* card, const void* kernel, int threads,
                                      int dynamic_bytes = 0) {
  return card == nullptr ? 0 : emulated_occupancy(*card, kernel, threads, dynamic_bytes).padding;
}

}  // namespace sm7x
