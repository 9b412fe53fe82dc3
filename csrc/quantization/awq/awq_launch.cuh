// Registry lookups of one arch path: the instantiation a FusedConfig names, launched or asked for its
// occupancy (awq_registry.h lists them; awq_gemm_sm70.cu / awq_gemm_sm75.cu instantiate these).
#pragma once
#include <stdexcept>
#include <string>

#include "quantization/awq/awq_fused_kernel.cuh"
#include "quantization/awq/awq_registry.h"
#include "quantization/awq/awq_shared_x_kernel.cuh"

namespace sm7x::awq {

template <class ArchTag>
void launch_fused_impl(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_fused_entry<ArchTag, T, W, C>(p, stream);
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_LAUNCH)
#undef SM7X_AWQ_LAUNCH
#define SM7X_AWQ_LAUNCH_SHARED_X(T, W) \
  if (is_instantiation(config, T, W, W)) return launch_shared_x_entry<ArchTag, T, W>(p, stream);
  SM7X_AWQ_SHARED_X_REGISTRY(SM7X_AWQ_LAUNCH_SHARED_X)
#undef SM7X_AWQ_LAUNCH_SHARED_X
  throw std::invalid_argument("awq: no fused kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
void launch_grouped_impl(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                         cudaStream_t stream) {
#define SM7X_AWQ_LAUNCH_GROUPED(T, W, C) \
  if (is_instantiation(config, T, W, C)) return launch_grouped_entry<ArchTag, T, W, C>(p, g, tiles, stream);
  SM7X_AWQ_GROUPED_REGISTRY(SM7X_AWQ_LAUNCH_GROUPED)
#undef SM7X_AWQ_LAUNCH_GROUPED
  throw std::invalid_argument("awq: no grouped kernel with " + describe(config) + " (see awq_registry.h)");
}

template <class ArchTag>
int fused_ctas_per_sm_impl(const FusedConfig& config) {
#define SM7X_AWQ_OCCUPANCY(T, W, C) \
  if (is_instantiation(config, T, W, C)) return fused_entry_ctas_per_sm<ArchTag, T, W, C>();
  SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_OCCUPANCY)
#undef SM7X_AWQ_OCCUPANCY
#define SM7X_AWQ_OCCUPANCY_SHARED_X(T, W) \
  if (is_instantiation(config, T, W, W)) return shared_x_entry_ctas_per_sm<ArchTag, T, W>();
  SM7X_AWQ_SHARED_X_REGISTRY(SM7X_AWQ_OCCUPANCY_SHARED_X)
#undef SM7X_AWQ_OCCUPANCY_SHARED_X
  return 0;
}

}  // namespace sm7x::awq
