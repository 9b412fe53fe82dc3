// Turing-path instantiation of the tensor-core decode kernel (m16n8k8 + ldmatrix; archs >= 7.5 only).
#include "core/warp_tile_sm75.cuh"
#include "decode/decode_mma_kernel.cuh"

namespace flash_v100 {

template void launch_decode_mma<sm7x::Sm75>(const DecodeParams&, int, int, const sm7x::CardLimits*, cudaStream_t);
template DecodeOccupancy decode_mma_occupancy<sm7x::Sm75>(int, int, const sm7x::CardLimits&);
template void settle_decode_mma_paddings<sm7x::Sm75>(int, const sm7x::CardLimits&);

}  // namespace flash_v100
