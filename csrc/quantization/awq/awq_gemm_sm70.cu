// Volta-path instantiation of the fused AWQ GEMM (checked by tools/check_volta_legality.py).
#include "core/warp_tile_sm70.cuh"
#include "quantization/awq/awq_gemm_kernel.cuh"

namespace sm7x::awq {

template <>
void launch_gemm<Sm70>(const GemmParams& p, cudaStream_t stream) {
  launch_gemm_impl<Sm70>(p, stream);
}

}  // namespace sm7x::awq
