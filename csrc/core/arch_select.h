// Host side: which arch path runs. Python decides what to ask for (native, or the emulation switch
// VLLM_SM7X_EMULATE); this checks that the device can run it and that this build carries it.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

#include "arch.h"
#include "cuda_check.h"

#ifndef SM7X_BUILD_SM75
#define SM7X_BUILD_SM75 1
#endif

namespace sm7x {

// major*100 + minor*10 of a device, e.g. 700 for V100, 900 for H100.
inline int device_compute_capability(int device) {
  int major = 0, minor = 0;
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 100 + minor * 10;
}

inline const char* arch_path_name(ArchPath path) { return path == ArchPath::kSm70 ? Sm70::kName : Sm75::kName; }

// Whether `path` is the native one of a device (device_cc: major*100 + minor*10); forced elsewhere,
// the path is emulated.
inline bool is_native_path(ArchPath path, int device_cc) {
  return path == ArchPath::kSm70 ? Sm70::is_native_for(device_cc) : Sm75::is_native_for(device_cc);
}

// requested: "auto" (the device's native path), "sm70" or "sm75". device_cc: major*100 + minor*10.
inline ArchPath resolve_arch_path(const std::string& requested, int device_cc) {
  const std::string cc = std::to_string(device_cc / 100) + "." + std::to_string(device_cc / 10 % 10);
  ArchPath path;
  if (requested == "sm70") {
    path = ArchPath::kSm70;
  } else if (requested == "sm75") {
    path = ArchPath::kSm75;
  } else if (requested == "auto") {
    if (Sm70::is_native_for(device_cc)) {
      path = ArchPath::kSm70;
    } else if (Sm75::is_native_for(device_cc)) {
      path = ArchPath::kSm75;
    } else {
      throw std::invalid_argument("no native SM7x path for compute capability " + cc +
                                  ": force one with path='sm70' or 'sm75' (VLLM_SM7X_EMULATE=sm70|sm75)");
    }
  } else {
    throw std::invalid_argument("unknown arch path '" + requested + "': use 'auto', 'sm70' or 'sm75'");
  }
  const bool runs = path == ArchPath::kSm70 ? Sm70::can_run_on(device_cc) : Sm75::can_run_on(device_cc);
  if (!runs) {
    throw std::invalid_argument(std::string("the ") + arch_path_name(path) +
                                " path cannot run on a GPU of compute capability " + cc);
  }
  if (path == ArchPath::kSm75 && !SM7X_BUILD_SM75) {
    throw std::invalid_argument("this build has no sm75 kernels (built for " SM7X_CUDA_ARCHS_STR
                                "): rebuild with TORCH_CUDA_ARCH_LIST='7.0;7.5'");
  }
  return path;
}

// Calls f(Sm70{}) or f(Sm75{}): the one place a runtime path becomes a tag type.
template <class F>
decltype(auto) dispatch_arch_path(ArchPath path, F&& f) {
  // Without sm75 objects, the Sm75 branch must not be instantiated (its symbols do not exist).
#if SM7X_BUILD_SM75
  if (path == ArchPath::kSm75) return std::forward<F>(f)(Sm75{});
#else
  if (path == ArchPath::kSm75) throw std::invalid_argument("this build has no sm75 kernels");
#endif
  return std::forward<F>(f)(Sm70{});
}

}  // namespace sm7x
