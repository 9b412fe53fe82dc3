// Sm75-path instantiation (compiled only for archs >= 7.5).
#include "core/warp_tile_sm75.cuh"
#include "diagnostics/mma_gemm_kernel.cuh"

namespace sm7x {

template <>
void launch_mma_gemm<Sm75>(const __half* a, const __half* b, float* c, int M, int N, int K, cudaStream_t stream) {
  diagnostics::launch_mma_gemm_impl<Sm75>(a, b, c, M, N, K, stream);
}

}  // namespace sm7x
