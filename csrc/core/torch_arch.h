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

// Every kernel here targets compute capability 7.0 and newer (the wheels carry no older machine code):
// an older GPU gets this refusal by name before any launch, not "no kernel image is available".
inline void check_volta_or_newer(const torch::Tensor& on, const char* op) {
  const int cc = device_compute_capability(on.get_device());
  TORCH_CHECK_VALUE(cc >= 700, op, ": this GPU has compute capability ", cc / 100, ".", cc / 10 % 10,
                    "; the SM70/SM75 kernels need 7.0 (Volta) or newer. On older GPUs use PyTorch's "
                    "scaled_dot_product_attention (or vLLM's own backends)");
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
