// Volta-path instantiations of the fused AWQ GEMM (compiled for every arch >= 7.0).
#include "quantization/awq/awq_fused_kernel.cuh"
#include "quantization/awq/awq_tiled_kernel.cuh"
#include "quantization/awq/awq_warp_sm70.cuh"

namespace sm7x::awq {

SM7X_AWQ_INSTANTIATE(Sm70)

}  // namespace sm7x::awq
