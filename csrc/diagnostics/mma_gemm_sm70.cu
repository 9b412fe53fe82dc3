// Sm70-path instantiation. Files named *_sm70.cu hold only Volta-path code: the Volta-legality
// check (tools/check_volta_legality.py) assembles each of them for sm_70.
#include "core/warp_tile_sm70.cuh"
#include "diagnostics/mma_gemm_kernel.cuh"

namespace sm7x {

template void launch_mma_gemm<Sm70>(const __half*, const __half*, float*, int, int, int, cudaStream_t);

}  // namespace sm7x
