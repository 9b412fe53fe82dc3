// The arch-path selector for torch ops: resolves `path` for the device of `on`, turning a refusal
// into a ValueError that names the op.
#pragma once
#include <torch/all.h>

#include <optional>
#include <string>

#include "core/arch_select.h"
#include "core/emulated_occupancy.h"

namespace sm7x {

inline ArchPath resolve_arch_path_for(const torch::Tensor& on, const std::string& path, const char* op) {
  try {
    return resolve_arch_path(path, device_compute_capability(on.get_device()));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, op, ": ", e.what());
  }
}

// The card whose occupancy `path` emulates on the device of `on`: a path forced ("sm70", "sm75") on a
// GPU that is not its native one; nullopt for "auto" and on the card itself.
inline std::optional<CardLimits> emulated_card_for(const torch::Tensor& on, const std::string& path, const char* op) {
  if (path == "auto") return std::nullopt;
  const ArchPath arch_path = resolve_arch_path_for(on, path, op);
  if (is_native_path(arch_path, device_compute_capability(on.get_device()))) return std::nullopt;
  return card_limits(arch_path);
}

}  // namespace sm7x
