// Sm75-path instantiation (compiled only for archs >= 7.5).
#include "core/warp_tile_sm75.cuh"
#include "diagnostics/mma_gemm_kernel.cuh"

namespace sm7x {

template void launch_mma_gemm<Sm75>(const __half*, const __half*, float*, int, int, int, cudaStream_t);

}  // namespace sm7x
