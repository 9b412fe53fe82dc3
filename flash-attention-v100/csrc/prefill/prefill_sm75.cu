// Turing-path instantiation of the tensor-core prefill (m16n8k8 + ldmatrix; archs >= 7.5 only).
#include <stdexcept>

#include "core/warp_tile_sm75.cuh"
#include "prefill/prefill_kernel.cuh"

namespace flash_v100 {

template <>
void launch_prefill_attention<sm7x::Sm75>(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated,
                                          cudaStream_t stream) {
  launch_prefill_impl<sm7x::Sm75>(p, head_dim, emulated, stream);
}

}  // namespace flash_v100
