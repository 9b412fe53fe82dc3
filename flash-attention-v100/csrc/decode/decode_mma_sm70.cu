// Volta-path instantiation of the tensor-core decode kernel (m8n8k4; runs on every arch >= 7.0).
#include "core/warp_tile_sm70.cuh"
#include "decode/decode_mma_kernel.cuh"

namespace flash_v100 {

template void launch_decode_mma<sm7x::Sm70>(const DecodeParams&, int, int, const sm7x::CardLimits*, cudaStream_t);
template DecodeOccupancy decode_mma_occupancy<sm7x::Sm70>(int, int, const sm7x::CardLimits&);
template void settle_decode_mma_paddings<sm7x::Sm70>(int, const sm7x::CardLimits&);

}  // namespace flash_v100
