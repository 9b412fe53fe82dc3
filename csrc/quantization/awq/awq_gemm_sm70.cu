// Volta-path instantiations of the fused AWQ GEMM (compiled for every arch >= 7.0).
#include "quantization/awq/awq_fused_kernel.cuh"
#include "quantization/awq/awq_tiled_kernel.cuh"
#include "quantization/awq/awq_warp_sm70.cuh"

namespace sm7x::awq {

template <>
void launch_fused<Sm70>(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
  launch_fused_impl<Sm70>(p, config, stream);
}

template <>
void launch_grouped<Sm70>(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                          cudaStream_t stream) {
  launch_grouped_impl<Sm70>(p, g, tiles, config, stream);
}

template <>
int fused_ctas_per_sm<Sm70>(const FusedConfig& config) {
  return fused_ctas_per_sm_impl<Sm70>(config);
}

template <>
void launch_tiled<Sm70>(const GemmParams& p, const FusedConfig& config, cudaStream_t stream) {
  launch_tiled_impl<Sm70>(p, config, stream);
}

template <>
void launch_grouped_tiled<Sm70>(const GemmParams& p, const GroupedRows& g, int tiles, const FusedConfig& config,
                                  cudaStream_t stream) {
  launch_grouped_tiled_impl<Sm70>(p, g, tiles, config, stream);
}

template <>
int tiled_ctas_per_sm<Sm70>(const FusedConfig& config) {
  return tiled_ctas_per_sm_impl<Sm70>(config);
}

}  // namespace sm7x::awq
