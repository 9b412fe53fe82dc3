// Attention of each sequence's new query tokens (decode, MTP verification; any length, varlen) over a
// paged KV cache:
// out = softmax(q k^T * scale [softcap, causal, window]) v, fp32 online softmax, split-KV for long
// contexts (fp32 partials merged by their log-sum-exp in a fixed order).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/arch.h"
#include "core/emulated_occupancy.h"
#include "paged_kv/kv_format.h"

namespace flash_v100 {

constexpr int kDecodeTileTokens = 32;  // KV tokens per shared-memory tile (one per lane)
// The merge stages one log-sum-exp per split in shared memory (2 KB). 128 capped a single KV head
// (TP4 of Qwen3.6-27B, batch 1: the seed's long-context case) at 128 CTAs, under one per SM of an
// H100 and 1.6 per SM of a V100, where the split rule asks for two.
constexpr int kDecodeMaxSplits = 512;
constexpr int kDecodeRowsPerCta = 16;  // most query rows (q_len x heads of one KV head) per CTA
constexpr int kMma8Rows = 8;           // query rows per CTA of the 8-row tensor-core kernel (decode_mma8.cuh)
constexpr int kPairRows = 16;          // query rows per CTA of the pair kernel (decode_pairs_sm75.cu)
// The row block for a call whose longest short sequence has `rows` query rows: the smallest of 4, 8, 16
// that holds them (row blocks per sequence are ceil(rows / 16) either way).
constexpr int decode_rows_per_cta(int64_t rows) { return rows <= 4 ? 4 : rows <= 8 ? 8 : kDecodeRowsPerCta; }
// Sequences with at least this many new queries go to the tensor-core prefill kernel, the others
// to a decode kernel (decode, MTP verification; flash_api.cpp's decode_choice); a mixed batch launches both.
constexpr int kPrefillMinQueryLen = 17;

struct DecodeParams {
  const __half* q;            // [total_q, q_heads, head_dim]: sequence b's queries are rows
                              // cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1; head_dim contiguous
  const void* k_cache;        // [num_blocks, block_size, kv_heads, head_dim], head_dim contiguous,
  const void* v_cache;        // elements as kv_format says; strides below in elements
  KvFormat kv_format;
  const int* cu_seqlens_q;    // [batch + 1]
  const int* seqlens_k;       // [batch]: keys per sequence, its new queries' own keys included
  const int* block_table;     // [batch, max_blocks]
  __half* out;                // [total_q, q_heads, head_dim] contiguous, when splits == 1
  float* lse;                 // [q_heads, total_q], when splits == 1
  float* partial_out;         // [splits, split_rows, head_dim], when splits > 1: query q_index of
  float* partial_lse;         // [splits, split_rows]            sequence b, head h at row
                              // (b * max_q_len + q_index) * q_heads + h (the decode kernel's queries only)
  int64_t q_token_stride, q_head_stride;
  int64_t k_block_stride, k_token_stride, k_head_stride;
  int64_t v_block_stride, v_token_stride, v_head_stride;
  int64_t block_table_stride;
  int batch, total_q, max_q_len, q_heads, kv_heads, block_size;
  int max_keys;               // block-table capacity: longer seqlens_k are clamped, never read past it
  float scale;                // softmax scale, times the K cache's dequantisation scale
  float v_scale;              // the V cache's dequantisation scale (1 for fp16 caches)
  float softcap;              // 0: off
  int window_left;            // keys at most this far left of the query; -1: unlimited
  bool causal;                // a sequence's queries are its last positions; no key to their right
  int splits;                 // KV ranges per sequence (each a whole number of tiles)
};

// Rows (query x head) of one split's partials: batch x max_q_len x q_heads. The op sizes the buffers
// and the kernels index them by this one rule.
__host__ __device__ inline int64_t split_rows(const DecodeParams& p) {
  return (int64_t)p.batch * p.max_q_len * p.q_heads;
}

// The decode kernels, head_dim 64, 128 or 256 (checked by the op); with splits > 1 they write partials,
// which launch_decode_merge then merges into out and lse (a no-op for one split). The SIMT kernel is
// the same on every arch; the tensor-core ones take the arch path's mma (decode_mma_sm70.cu,
// decode_mma_sm75.cu; the 8-row kernel decode_mma8_sm70.cu, decode_mma8_sm75.cu). Which one runs is
// flash_api.cpp's decode_choice. `emulated`: the card whose CTAs per SM to hold to on a newer GPU
// (core/emulated_occupancy.h), or nullptr.
// The ArchTag templates are defined in decode_mma_kernel.cuh and decode_mma8.cuh and instantiated for
// sm7x::Sm70 and sm7x::Sm75 by the arch paths' .cu files (no other tag links).
void launch_decode_simt(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                        cudaStream_t stream);
// row_groups: groups of 16 query rows per CTA of the tensor-core kernel (1, or 2: 32 rows on 8 warps).
template <class ArchTag>
void launch_decode_mma(const DecodeParams& params, int head_dim, int row_groups, const sm7x::CardLimits* emulated,
                       cudaStream_t stream);
// The tensor-core kernel for blocks of 8 query rows (decode_mma8.cuh: each warp on its own stages of keys,
// fragments loaded straight from the cache), on the arch path's mma.
template <class ArchTag>
void launch_decode_mma8(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                        cudaStream_t stream);
void launch_decode_merge(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                         cudaStream_t stream);
// Under emulation, pads every decode kernel of this head_dim for `card` (SIMT with the merge, and the
// tensor-core ones of one arch path; cached after the first call). The op calls both on every emulated
// call: the first is eager (vLLM's profiling run), so no padding's driver calls fall inside a CUDA
// graph capture, whichever kernel, row block or cache format the captured batches use.
void settle_decode_paddings(int head_dim, const sm7x::CardLimits& card);
template <class ArchTag>
void settle_decode_mma_paddings(int head_dim, const sm7x::CardLimits& card);
template <class ArchTag>
void settle_decode_mma8_paddings(int head_dim, const sm7x::CardLimits& card);

// A decode kernel's fp16-cache form under `card`'s occupancy: CTAs per SM the card would hold, this GPU
// holds with the padding, and the padding (diagnostics and tests). decode_occupancy: the SIMT kernel
// for this many query rows per KV head; decode_mma_occupancy: the tensor-core kernel of an arch path.
struct DecodeOccupancy {
  int card_ctas, device_ctas, padding;
};
DecodeOccupancy decode_occupancy(int head_dim, int64_t query_rows, const sm7x::CardLimits& card);
template <class ArchTag>
DecodeOccupancy decode_mma_occupancy(int head_dim, int row_groups, const sm7x::CardLimits& card);
template <class ArchTag>
DecodeOccupancy decode_mma8_occupancy(int head_dim, const sm7x::CardLimits& card);

// The pair kernel (decode_pairs_sm75.cu: blocks of 16 query rows on warp pairs that split head_dim, for MTP
// verification; head_dim 128 or 256). Only the Turing path has it: these three exist for sm7x::Sm75 alone
// (declared as its specializations here; callers guard the tag with if constexpr).
template <class ArchTag>
void launch_decode_pairs(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                         cudaStream_t stream);
template <class ArchTag>
void settle_decode_pairs_paddings(int head_dim, const sm7x::CardLimits& card);
template <class ArchTag>
DecodeOccupancy decode_pairs_occupancy(int head_dim, const sm7x::CardLimits& card);
template <>
void launch_decode_pairs<sm7x::Sm75>(const DecodeParams& params, int head_dim, const sm7x::CardLimits* emulated,
                                     cudaStream_t stream);
template <>
void settle_decode_pairs_paddings<sm7x::Sm75>(int head_dim, const sm7x::CardLimits& card);
template <>
DecodeOccupancy decode_pairs_occupancy<sm7x::Sm75>(int head_dim, const sm7x::CardLimits& card);

}  // namespace flash_v100
