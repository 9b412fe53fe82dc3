// Attention of long query blocks (prefill, chunked prefill over a cached prefix) on tensor cores:
// FlashAttention-2's forward (online softmax in fp32) over a paged KV cache, varlen batches.
// Same parameters as the SIMT kernel (decode/decode_attention.h); never split over keys.
#pragma once
#include "core/arch.h"
#include "decode/decode_attention.h"

namespace flash_v100 {

constexpr int kPrefillRowsPerCta = 64;  // query rows: 4 warps x 16
constexpr int kPrefillTileKeys = 16;    // keys per shared-memory tile

// `emulated`: the card whose CTAs per SM to hold to on a newer GPU (core/emulated_occupancy.h), or nullptr.
template <class ArchTag>
void launch_prefill_attention(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                              cudaStream_t stream);
template <>
void launch_prefill_attention<sm7x::Sm70>(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                                          cudaStream_t stream);
template <>
void launch_prefill_attention<sm7x::Sm75>(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                                          cudaStream_t stream);

}  // namespace flash_v100
