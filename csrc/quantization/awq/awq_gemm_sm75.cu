// Turing-path instantiation of the fused AWQ GEMM (compiled for archs >= 7.5 only).
#include "core/warp_tile_sm75.cuh"
#include "quantization/awq/awq_gemm_kernel.cuh"

namespace sm7x::awq {

template <>
void launch_gemm<Sm75>(const GemmParams& p, cudaStream_t stream) {
  launch_gemm_impl<Sm75>(p, stream);
}

}  // namespace sm7x::awq
