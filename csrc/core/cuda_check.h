// Error checks for host code that calls the CUDA runtime directly (kernel TUs carry no torch).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace sm7x {

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + " failed at " + file + ":" + std::to_string(line) + ": " +
                             cudaGetErrorString(err));
  }
}

}  // namespace sm7x

#define SM7X_CUDA_CHECK(expr) ::sm7x::check_cuda((expr), #expr, __FILE__, __LINE__)
// After a launch: catches bad configurations now and, later, faults of earlier kernels.
#define SM7X_CHECK_LAUNCH() ::sm7x::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
