// The arch-path selector for torch ops: resolves `path` for the device of `on`, turning a refusal
// into a ValueError that names the op.
#pragma once
#include <torch/all.h>

#include <string>

#include "core/arch_select.h"

namespace sm7x {

inline ArchPath resolve_arch_path_for(const torch::Tensor& on, const std::string& path, const char* op) {
  try {
    return resolve_arch_path(path, device_compute_capability(on.get_device()));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, op, ": ", e.what());
  }
}

}  // namespace sm7x
