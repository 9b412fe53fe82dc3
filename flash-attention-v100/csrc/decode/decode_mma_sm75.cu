// Turing-path instantiation of the tensor-core decode kernel (m16n8k8 + ldmatrix; archs >= 7.5 only).
#include "core/warp_tile_sm75.cuh"
#include "decode/decode_mma_kernel.cuh"

namespace flash_v100 {

template <>
void launch_decode_mma<sm7x::Sm75>(const DecodeParams& p, int head_dim, int row_groups,
                                   const sm7x::CardLimits* emulated, cudaStream_t stream) {
  launch_decode_mma_impl<sm7x::Sm75>(p, head_dim, row_groups, emulated, stream);
}

template <>
DecodeOccupancy decode_mma_occupancy<sm7x::Sm75>(int head_dim, int row_groups, const sm7x::CardLimits& card) {
  return decode_mma_occupancy_impl<sm7x::Sm75>(head_dim, row_groups, card);
}

template <>
void settle_decode_mma_paddings<sm7x::Sm75>(int head_dim, const sm7x::CardLimits& card) {
  settle_decode_mma_paddings_impl<sm7x::Sm75>(head_dim, card);
}

}  // namespace flash_v100
