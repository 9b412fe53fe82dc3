// What one decode CTA works on, shared by the SIMT and the tensor-core decode kernels and the merge:
// the split ranges of a sequence's keys, the CTA's query rows and visible keys, and where a query row's
// output and log-sum-exp go.
#pragma once
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/emulated_occupancy.h"
#include "decode/decode_attention.h"

namespace flash_v100 {

// Keys per split of a sequence with `keys` keys: whole tiles, sized by the sequence's own length (the
// split count is fixed by shapes, so CUDA graphs stay valid; a context shorter than `splits` tiles uses
// only the first ceil(keys / split_keys) splits). One tile per split at least: measured on H200, ranges of
// at least 4 tiles made a 4K-key decode ~1.7x slower (fewer CTAs, each a longer serial chain). The
// decode kernels and the merge all derive the ranges from here.
__device__ __forceinline__ int split_keys(int keys, int splits) {
  return ((keys + splits - 1) / splits + kDecodeTileTokens - 1) / kDecodeTileTokens * kDecodeTileTokens;
}

__device__ __forceinline__ int used_splits(int keys, int splits) {
  const int per_split = split_keys(keys, splits);
  return per_split == 0 ? 0 : min(splits, (keys + per_split - 1) / per_split);
}

// Row of the split buffers for query q_index (< p.max_q_len, the decode kernels' cap) of sequence b and
// query head `head`: only the rows the decode kernels serve have room there, so a long prompt in the
// batch (the prefill kernel's) adds nothing to them.
__device__ __forceinline__ int64_t split_row(const DecodeParams& p, int b, int q_index, int head) {
  return ((int64_t)b * p.max_q_len + q_index) * p.q_heads + head;
}

// grid = (sequence x row block, KV head, split). Query rows r = q_index * group + head_in_group (GQA
// packing: every row of one KV head shares its keys).
struct DecodeCta {
  int b, kv_head, split, q_begin, q_len, group, rows, keys;
  int first_row, last_row;  // this CTA's query rows (last_row < rows)
  int t_first, t_end;       // keys any of its rows can see, in its split

  __device__ int q_index(int r) const { return r / group; }
  __device__ int head(int r) const { return kv_head * group + r % group; }
  __device__ int q_pos(int r) const { return keys - q_len + r / group; }  // the query's own key position
  __device__ int64_t out_row(const DecodeParams& p, int r) const {
    return (int64_t)(q_begin + q_index(r)) * p.q_heads + head(r);
  }
  __device__ int64_t partial_row(const DecodeParams& p, int r) const {
    return split * split_rows(p) + split_row(p, b, q_index(r), head(r));
  }
  __device__ float* lse(const DecodeParams& p, int r) const {
    return p.splits == 1 ? p.lse + (int64_t)head(r) * p.total_q + q_begin + q_index(r)
                         : p.partial_lse + partial_row(p, r);
  }
  __device__ const __half* q_row(const DecodeParams& p, int r) const {
    return p.q + (q_begin + q_index(r)) * p.q_token_stride + head(r) * p.q_head_stride;
  }
};

// This CTA's work, or false when it has none (a row block past its sequence's rows, a sequence left to
// the prefill kernel, a split past the sequence's keys; an empty split writes the -inf log-sum-exps by
// which the merge skips it).
template <int kRowsPerCta>
__device__ __forceinline__ bool decode_cta(const DecodeParams& p, DecodeCta& c) {
  const int row_blocks = (p.max_q_len * (p.q_heads / p.kv_heads) + kRowsPerCta - 1) / kRowsPerCta;
  c.b = blockIdx.x / row_blocks;
  c.kv_head = blockIdx.y;
  c.split = blockIdx.z;
  c.q_begin = p.cu_seqlens_q[c.b];
  c.q_len = p.cu_seqlens_q[c.b + 1] - c.q_begin;
  c.group = p.q_heads / p.kv_heads;
  // Rows past max_q_len queries have no grid slot or split row of their own: a caller's max_decode_q_len
  // below a sequence's query count leaves those queries unwritten rather than writing another's rows.
  c.rows = min(c.q_len, p.max_q_len) * c.group;
  c.first_row = blockIdx.x % row_blocks * kRowsPerCta;
  // The grid is sized for the longest short sequence; long query blocks belong to the prefill kernel.
  if (c.first_row >= c.rows || c.q_len >= kPrefillMinQueryLen) return false;
  c.last_row = min(c.rows, c.first_row + kRowsPerCta) - 1;
  c.keys = min(p.seqlens_k[c.b], p.max_keys);
  const int per_split = split_keys(c.keys, p.splits);
  const int t_begin = c.split * per_split;
  // Past the sequence's last used split: nothing to write, the merge stops before it (a short context in
  // a 256K block table leaves most of the 512 splits here).
  if (p.splits > 1 && c.split >= used_splits(c.keys, p.splits)) return false;
  // Skip keys no row of this CTA can see (right of its last query when causal, left of its window).
  c.t_end = min(c.keys, t_begin + per_split);
  if (p.causal) c.t_end = min(c.t_end, c.q_pos(c.last_row) + 1);
  c.t_first = p.window_left < 0 ? t_begin : max(t_begin, c.q_pos(c.first_row) - p.window_left);
  if (p.splits > 1 && c.t_first >= c.t_end) {
    for (int r = c.first_row + threadIdx.x; r <= c.last_row; r += blockDim.x) *c.lse(p, r) = -INFINITY;
    return false;
  }
  return true;
}

// Key t is visible to the query at key position q_pos (valid: it is one of the sequence's rows).
__device__ __forceinline__ bool decode_visible_at(const DecodeParams& p, const DecodeCta& c, bool valid, int q_pos,
                                                  int t) {
  return valid && t < c.t_end && (!p.causal || t <= q_pos) && (p.window_left < 0 || t >= q_pos - p.window_left);
}
// Key t is visible to query row r (valid: r is one of the sequence's rows).
__device__ __forceinline__ bool decode_visible(const DecodeParams& p, const DecodeCta& c, bool valid, int r, int t) {
  return decode_visible_at(p, c, valid, c.q_pos(r), t);
}

// Calls fn(std::integral_constant<int, D>{}) for head_dim D in {64, 128, 256}.
template <class Fn>
decltype(auto) dispatch_head_dim(int head_dim, Fn&& fn) {
  switch (head_dim) {
    case 64: return fn(std::integral_constant<int, 64>{});
    case 128: return fn(std::integral_constant<int, 128>{});
    case 256: return fn(std::integral_constant<int, 256>{});
    default: throw std::invalid_argument("decode attention: head_dim must be 64, 128 or 256");
  }
}

using DecodeKernel = void (*)(DecodeParams);

// A decode kernel's CTAs per SM under `card` (the card's, this GPU's with the padding, the padding).
inline DecodeOccupancy kernel_occupancy(DecodeKernel kernel, int threads, const sm7x::CardLimits& card) {
  const auto occupancy = sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(kernel), threads);
  int device_ctas = 0;
  SM7X_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&device_ctas, kernel, threads, occupancy.padding));
  return {occupancy.card_ctas, device_ctas, occupancy.padding};
}

// Launches `kernel` with the dynamic shared memory that holds it to the emulated card's CTAs per SM
// (none natively; the decode kernels use static shared memory only).
inline void launch_as_card(DecodeKernel kernel, dim3 grid, int threads, const sm7x::CardLimits* emulated,
                           cudaStream_t stream, const DecodeParams& p) {
  const int padding = sm7x::emulated_occupancy_padding(emulated, reinterpret_cast<const void*>(kernel), threads);
  kernel<<<grid, threads, padding, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

}  // namespace flash_v100
