// Turing-path instantiations of the fused AWQ GEMM (compiled for archs >= 7.5 only).
#include "quantization/awq/awq_fused_kernel.cuh"
#include "quantization/awq/awq_tiled_kernel.cuh"
#include "quantization/awq/awq_warp_sm75.cuh"

namespace sm7x::awq {

SM7X_AWQ_INSTANTIATE(Sm75)

}  // namespace sm7x::awq
