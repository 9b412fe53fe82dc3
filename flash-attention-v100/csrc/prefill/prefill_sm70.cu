// Volta-path instantiation of the tensor-core prefill (m8n8k4; compiled for every arch >= 7.0).
#include <stdexcept>

#include "core/warp_tile_sm70.cuh"
#include "prefill/prefill_kernel.cuh"

namespace flash_v100 {

template <>
void launch_prefill_attention<sm7x::Sm70>(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated,
                                          cudaStream_t stream) {
  launch_prefill_impl<sm7x::Sm70>(p, head_dim, emulated, stream);
}

}  // namespace flash_v100
