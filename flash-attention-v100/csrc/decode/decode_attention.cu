// Arch-neutral (SIMT) decode attention: the same code on every arch >= 7.0 (TurboMind decodes on SIMT
// on Volta too: decode is bound by KV bytes, not by math, for a handful of query rows). Both paths'
// plain decodes now take the 8-row tensor-core kernel (decode_mma8.cuh; flash_api.cpp's decode_choice
// says on what measurements); this one runs where FLASH_ATTN_V100_DECODE=simt asks for it.
//
// CTA = (sequence x block of 4, 8 or 16 query rows, KV head, KV split) on 4 warps, or 8 of one row each
// for the 8-row block (plain decode at GQA groups of 5-8: the same shared memory, twice the warps per
// SM to hide its latencies; 0.89-0.99x the time of 4 warps of two rows on the H200, sm75 path,
// benchmarks/results/attention-sm75-h200-2026-12-01-simt-eight-warps.json). Query rows are the q_len x
// group query heads that share the KV head (GQA packing), so each KV tile is read once for all of them;
// the row block is the smallest that holds them (a single query of a group of 6 takes 8 rows, not 16,
// of scoring work). Per 32-token tile: K goes to shared memory and is scored, then V takes the same
// buffer for P.V. Each half's next tile is loaded into registers as soon as its buffer use begins
// (register staging: no cp.async before SM80), so both stay in flight for about a tile. One buffer
// instead of two keeps a CTA at 24 KB at head_dim 256: two per SM on a 64 KB Turing card (one with
// separate K and V tiles), three on a V100. Lane t scores token t against the warp's rows (queries in
// fp32 in shared memory where they fit); warp shuffles give each row's max and sum (online softmax in
// fp32); for P.V every lane owns head_dim/32 consecutive output columns of its warp's rows and takes p
// from the lane of each token. Shared memory is read in 16-byte vectors (8-byte for a lane's P.V
// columns at head_dim 128): a quarter of the load instructions.
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "core/cuda_check.h"
#include "decode/decode_attention.h"
#include "decode/decode_cta.cuh"
#include "paged_kv/read_kv.cuh"

namespace flash_v100 {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// N consecutive half2 pairs or fp32 pairs, read from shared memory as one vector (two for 32 bytes).
template <class Pair, int N>
struct alignas(sizeof(Pair) * N < 16 ? sizeof(Pair) * N : 16) Pairs {
  Pair v[N];
};

template <int N, class Pair>
__device__ __forceinline__ void load_pairs(const Pair* src, float2 (&dst)[N]) {
  const Pairs<Pair, N> pairs = *reinterpret_cast<const Pairs<Pair, N>*>(src);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if constexpr (std::is_same_v<Pair, float2>) {
      dst[i] = pairs.v[i];
    } else {
      dst[i] = __half22float2(pairs.v[i]);
    }
  }
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

template <int kHeadDim, int kWarps, int kRowsPerWarp, class Kv>
__device__ __forceinline__ void decode_attention_cta(const DecodeParams& p) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kRowsPerCta = kRowsPerWarp * kWarps;
  constexpr int kPairs = kHeadDim / 2;  // half2 per row
  // Rows 16-byte aligned for vector reads; the 4-word skew puts the 8 lanes of each 16-byte read phase
  // (lane t reads row t when scoring) in 8 different groups of 4 banks.
  constexpr int kStride = kPairs + 4;
  constexpr int kVecs = kHeadDim / 8;   // 16-byte vectors per row
  constexpr int kPairsPerLane = kPairs / 32;
  constexpr int kVecsPerThread = kDecodeTileTokens * kVecs / kThreads;  // of K and of V, per tile
  // Queries in fp32 where they fit beside the tile (4 or 8 rows), else fp16: at most 24 KB in all.
  // Every lane reads the same query pair (a broadcast).
  using QueryPair = std::conditional_t<kRowsPerWarp <= 2, float2, __half2>;
  __shared__ __align__(16) QueryPair q_s[kRowsPerCta][kPairs];
  // The tile's K (lane t reads row t), then its V (lanes read consecutive vectors of one row).
  __shared__ __align__(16) __half2 kv_s[kDecodeTileTokens][kStride];

  DecodeCta cta;
  if (!decode_cta<kRowsPerCta>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t_first = cta.t_first, t_end = cta.t_end;

  // This thread's vectors of one tile's K or V: vector index % kVecs of token index / kVecs.
  uint4 k_next[kVecsPerThread], v_next[kVecsPerThread];
  auto fetch = [&](uint4 (&dst)[kVecsPerThread], int t0, bool values) {
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i) {
      const int index = threadIdx.x + i * kThreads, t = t0 + index / kVecs;
      const auto read = values ? read_v_vec<Kv> : read_k_vec<Kv>;
      dst[i] = t < t_end ? read(p, kv_slot(p, cta.b, t), cta.kv_head, index % kVecs) : make_uint4(0, 0, 0, 0);
    }
  };
  auto store = [&](const uint4 (&vectors)[kVecsPerThread]) {
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i) {
      const int index = threadIdx.x + i * kThreads, tok = index / kVecs, vec = index % kVecs;
      *reinterpret_cast<uint4*>(&kv_s[tok][vec * 4]) = vectors[i];
    }
  };
  // The first tile's loads go out before anything else.
  if (t_first < t_end) {
    fetch(k_next, t_first, false);
    fetch(v_next, t_first, true);
  }

  // Query rows r = q_index * group + head_in_group (zeros past the last row).
  for (int i = threadIdx.x; i < kRowsPerCta * kPairs; i += kThreads) {
    const int row = i / kPairs, r = cta.first_row + row;
    const __half2 value =
        r <= cta.last_row ? reinterpret_cast<const __half2*>(cta.q_row(p, r))[i % kPairs] : __float2half2_rn(0.f);
    if constexpr (std::is_same_v<QueryPair, float2>) {
      q_s[row][i % kPairs] = __half22float2(value);
    } else {
      q_s[row][i % kPairs] = value;
    }
  }

  bool row_valid[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][2 * kPairsPerLane];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    row_valid[j] = cta.first_row + warp + kWarps * j <= cta.last_row;
    m[j] = -INFINITY;
    l[j] = 0.f;
#pragma unroll
    for (int d = 0; d < 2 * kPairsPerLane; ++d) o[j][d] = 0.f;
  }

  // On one row per warp, a warp past the last row (a GQA group of 6 in the 8-row block: Qwen3.6-27B's
  // plain decode leaves 2 of 8 warps empty) only loads and stores tiles: its scores and P.V would be a
  // quarter of the CTA's shared-memory reads and FMAs for nothing. Warp-uniform, so its shuffles are
  // skipped whole. The multi-row forms keep every warp (the check cost the 16-row form a spill).
  const bool warp_has_rows = kRowsPerWarp > 1 || row_valid[0];
  for (int t0 = t_first; t0 < t_end; t0 += kDecodeTileTokens) {
    const bool more = t0 + kDecodeTileTokens < t_end;
    __syncthreads();  // the previous tile's P.V is done with the buffer (and q_s is written, first time)
    store(k_next);
    __syncthreads();
    if (more) fetch(k_next, t0 + kDecodeTileTokens, false);  // lands during this tile's scores and P.V

    float prob[kRowsPerWarp];
    if (warp_has_rows) {
      // Scores: lane = token of the tile. At 1-2 rows per warp, four partial sums per row (even/odd pair,
      // x/y half): one running sum would chain all head_dim FMAs of a row one after another, and with a few
      // warps per SM (two CTAs on a V100) that chain's latency, not memory, would set the tile's time
      // (measured on H200: plain decode 11-29% faster). At 4 rows per warp the rows are four chains
      // already, and four sums each made MTP verification at TP1 batch 4 16-19% slower: one sum per row.
      constexpr int kPartials = kRowsPerWarp <= 2 ? 4 : 1;
      const int t = t0 + lane;
      float partial[kRowsPerWarp][kPartials] = {};
#pragma unroll 2
      for (int c = 0; c < kPairs; c += 4) {
        float2 k[4];
        load_pairs<4>(&kv_s[lane][c], k);
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) {
          float2 q[4];
          load_pairs<4>(&q_s[warp + kWarps * j][c], q);  // a broadcast: every lane reads the same pairs
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if constexpr (kPartials == 4) {
              partial[j][i % 2 * 2] = fmaf(q[i].x, k[i].x, partial[j][i % 2 * 2]);
              partial[j][i % 2 * 2 + 1] = fmaf(q[i].y, k[i].y, partial[j][i % 2 * 2 + 1]);
            } else {
              partial[j][0] = fmaf(q[i].y, k[i].y, fmaf(q[i].x, k[i].x, partial[j][0]));
            }
          }
        }
      }
      float s[kRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        if constexpr (kPartials == 4) {
          s[j] = (partial[j][0] + partial[j][1]) + (partial[j][2] + partial[j][3]);
        } else {
          s[j] = partial[j][0];
        }
      }
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        float x = s[j] * p.scale;
        if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
        x = decode_visible(p, cta, row_valid[j], cta.first_row + warp + kWarps * j, t) ? x : -INFINITY;
        const float m_new = fmaxf(m[j], warp_max(x));
        // A row with nothing visible yet keeps m = -inf, p = 0 and its zero sums (no inf - inf).
        prob[j] = m_new == -INFINITY ? 0.f : __expf(x - m_new);
        const float rescale = m[j] == -INFINITY ? 0.f : __expf(m[j] - m_new);
        l[j] = l[j] * rescale + warp_sum(prob[j]);
        m[j] = m_new;
#pragma unroll
        for (int d = 0; d < 2 * kPairsPerLane; ++d) o[j][d] *= rescale;
      }
    }  // warp_has_rows

    __syncthreads();  // every warp's scores are done with K
    store(v_next);
    __syncthreads();
    if (more) fetch(v_next, t0 + kDecodeTileTokens, true);  // lands during this P.V and the next tile's scores

    // P.V: this lane's columns are half2 pairs lane * kPairsPerLane + c.
    if (!warp_has_rows) continue;
#pragma unroll 4
    for (int tok = 0; tok < kDecodeTileTokens; ++tok) {
      float2 v[kPairsPerLane];
      load_pairs<kPairsPerLane>(&kv_s[tok][lane * kPairsPerLane], v);
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const float pt = __shfl_sync(kFullMask, prob[j], tok);
#pragma unroll
        for (int c = 0; c < kPairsPerLane; ++c) {
          o[j][2 * c] = fmaf(pt, v[c].x, o[j][2 * c]);
          o[j][2 * c + 1] = fmaf(pt, v[c].y, o[j][2 * c + 1]);
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    if (!row_valid[j]) continue;
    const int r = cta.first_row + warp + kWarps * j;
    const float inv = l[j] > 0.f ? p.v_scale / l[j] : 0.f;  // nothing visible: zeros, lse -inf
    if (lane == 0) *cta.lse(p, r) = l[j] > 0.f ? m[j] + __logf(l[j]) : -INFINITY;
    if (p.splits == 1) {
      __half2* out = reinterpret_cast<__half2*>(p.out + cta.out_row(p, r) * kHeadDim);
#pragma unroll
      for (int c = 0; c < kPairsPerLane; ++c) {
        out[lane * kPairsPerLane + c] = __floats2half2_rn(o[j][2 * c] * inv, o[j][2 * c + 1] * inv);
      }
    } else {
      float2* out = reinterpret_cast<float2*>(p.partial_out + cta.partial_row(p, r) * kHeadDim);
#pragma unroll
      for (int c = 0; c < kPairsPerLane; ++c) {
        out[lane * kPairsPerLane + c] = make_float2(o[j][2 * c] * inv, o[j][2 * c + 1] * inv);
      }
    }
  }
}

// The kernels: head_dim 256 is bounded to 168 registers (no spills on sm_75), three CTAs per SM
// wherever shared memory allows (a V100; Turing's 64 KB allow two). Unbounded, nvcc 13 gives its
// 8-row form 171 for sm_75 and sm_90 (ptxas 12.8 for sm_70 stays at 164 by itself), so the bound
// holds the emulating GPU and other toolkits to the V100's count. The other head dims keep ptxas's
// own counts: any bound raised them. tests/ut/test_decode_occupancy_budget.py checks the counts.
template <int kHeadDim, int kWarps, int kRowsPerWarp, class Kv>
__global__ void __launch_bounds__(kWarps * 32) decode_kernel(const DecodeParams p) {
  decode_attention_cta<kHeadDim, kWarps, kRowsPerWarp, Kv>(p);
}
template <int kWarps, int kRowsPerWarp, class Kv>
__global__ void __launch_bounds__(kWarps * 32, 3) decode_kernel_d256(const DecodeParams p) {
  decode_attention_cta<256, kWarps, kRowsPerWarp, Kv>(p);
}

// The merge of the splits. CTA = (sequence, query of the decode kernel's, head, 64 columns): each warp
// sums every kCombineWarps-th split for its lane's two columns, and warp 0 adds the warps' sums in a
// fixed order (deterministic). Spreading one row over warps and CTAs keeps many loads in flight: one
// CTA per row, walking 264 splits serially, took as long as the decode kernel itself at 32K keys,
// TP4 b=1 (ncu, H200 2026-11-30: 31.9 us over 6 CTAs, latency-bound). Queries of sequences the decode
// kernel left to the prefill kernel return at once. Only the splits the sequence used are read (the
// decode kernel writes nothing past them), and partial outputs only of splits that saw a key (-inf).
constexpr int kCombineWarps = 8;
constexpr int kCombinePairs = 32;  // half2 columns per CTA: one per lane

template <int kHeadDim>
__global__ void __launch_bounds__(kCombineWarps * 32) combine_kernel(const DecodeParams p) {
  constexpr int kChunks = kHeadDim / 2 / kCombinePairs;
  const int64_t row = blockIdx.x / kChunks;  // split_row(p, b, q_index, head)
  const int c = blockIdx.x % kChunks * kCombinePairs + threadIdx.x % 32;  // half2 column
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = row % p.q_heads, q_index = row / p.q_heads % p.max_q_len, b = row / p.q_heads / p.max_q_len;
  const int q_begin = p.cu_seqlens_q[b], q_len = p.cu_seqlens_q[b + 1] - q_begin;
  if (q_index >= q_len || q_len >= kPrefillMinQueryLen) return;
  const int64_t rows = split_rows(p);
  const int splits = used_splits(min(p.seqlens_k[b], p.max_keys), p.splits);
  __shared__ float lse_s[kDecodeMaxSplits];
  __shared__ float warp_max_s[kCombineWarps];
  __shared__ float3 warp_sum_s[kCombineWarps][32];  // (acc.x, acc.y, total) per warp and lane
  float local_max = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    lse_s[s] = p.partial_lse[s * rows + row];
    local_max = fmaxf(local_max, lse_s[s]);
  }
  local_max = warp_max(local_max);
  if (lane == 0) warp_max_s[warp] = local_max;
  __syncthreads();
  float max_lse = -INFINITY;
#pragma unroll
  for (int w = 0; w < kCombineWarps; ++w) max_lse = fmaxf(max_lse, warp_max_s[w]);
  float2 acc = make_float2(0.f, 0.f);
  float total = 0.f;
  if (max_lse != -INFINITY) {
    // kMergeBatch partial loads in flight per lane (predicated, so no branch splits them).
    constexpr int kMergeBatch = 4;
    for (int s0 = warp; s0 < splits; s0 += kMergeBatch * kCombineWarps) {
      float weight[kMergeBatch];
      float2 part[kMergeBatch];
#pragma unroll
      for (int i = 0; i < kMergeBatch; ++i) {
        const int s = s0 + i * kCombineWarps;
        const bool used = s < splits && lse_s[s] != -INFINITY;
        weight[i] = used ? __expf(lse_s[s] - max_lse) : 0.f;
        part[i] = used ? reinterpret_cast<const float2*>(p.partial_out + (s * rows + row) * kHeadDim)[c]
                       : make_float2(0.f, 0.f);
      }
#pragma unroll
      for (int i = 0; i < kMergeBatch; ++i) {
        acc.x = fmaf(weight[i], part[i].x, acc.x);
        acc.y = fmaf(weight[i], part[i].y, acc.y);
        total += weight[i];
      }
    }
  }
  warp_sum_s[warp][lane] = make_float3(acc.x, acc.y, total);
  __syncthreads();
  if (warp != 0) return;
  acc = make_float2(0.f, 0.f);
  total = 0.f;
#pragma unroll
  for (int w = 0; w < kCombineWarps; ++w) {
    const float3 part = warp_sum_s[w][lane];
    acc.x += part.x;
    acc.y += part.y;
    total += part.z;
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
  const int64_t out_row = (int64_t)(q_begin + q_index) * p.q_heads + head;
  reinterpret_cast<__half2*>(p.out + out_row * kHeadDim)[c] = __floats2half2_rn(acc.x * inv, acc.y * inv);
  if (c == 0) p.lse[(int64_t)head * p.total_q + q_begin + q_index] = total > 0.f ? max_lse + __logf(total) : -INFINITY;
}

// A SIMT decode kernel and its CTA size.
struct SimtKernel {
  DecodeKernel kernel;
  int threads;
};

template <int kHeadDim, int kWarps, int kRowsPerWarp, class Kv>
constexpr SimtKernel simt_kernel_of() {
  if constexpr (kHeadDim == 256) {
    return {decode_kernel_d256<kWarps, kRowsPerWarp, Kv>, kWarps * 32};
  } else {
    return {decode_kernel<kHeadDim, kWarps, kRowsPerWarp, Kv>, kWarps * 32};
  }
}

// The decode kernel for a call whose longest short sequence has `query_rows` rows per KV head.
template <int kHeadDim, class Kv>
SimtKernel simt_kernel_for(int64_t query_rows) {
  switch (decode_rows_per_cta(query_rows)) {
    case 4: return simt_kernel_of<kHeadDim, 4, 1, Kv>();
    case 8: return simt_kernel_of<kHeadDim, 8, 1, Kv>();
    default: return simt_kernel_of<kHeadDim, 4, kDecodeRowsPerCta / 4, Kv>();
  }
}

template <int kHeadDim>
void settle_paddings(const sm7x::CardLimits& card) {
  for (const int64_t rows : {4, 8, kDecodeRowsPerCta}) {
    for (const SimtKernel simt :
         {simt_kernel_for<kHeadDim, KvFloat16>(rows), simt_kernel_for<kHeadDim, KvFp8E5m2>(rows)}) {
      sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(simt.kernel), simt.threads);
    }
  }
  sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(combine_kernel<kHeadDim>), kCombineWarps * 32);
}

template <int kHeadDim>
void launch_simt_for(const DecodeParams& p, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  const int64_t query_rows = (int64_t)p.max_q_len * (p.q_heads / p.kv_heads);
  const int64_t rows_per_cta = decode_rows_per_cta(query_rows);
  const dim3 grid(p.batch * ((query_rows + rows_per_cta - 1) / rows_per_cta), p.kv_heads, p.splits);
  dispatch_kv_format(p.kv_format, [&](auto kv) {
    const SimtKernel simt = simt_kernel_for<kHeadDim, decltype(kv)>(query_rows);
    launch_as_card(simt.kernel, grid, simt.threads, emulated, stream, p);
  });
}

template <int kHeadDim>
void launch_merge_for(const DecodeParams& p, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.splits == 1) return;
  const int64_t chunks = kHeadDim / 2 / kCombinePairs;
  launch_as_card(combine_kernel<kHeadDim>, dim3(split_rows(p) * chunks), kCombineWarps * 32, emulated, stream, p);
}

}  // namespace

DecodeOccupancy decode_occupancy(int head_dim, int64_t query_rows, const sm7x::CardLimits& card) {
  return dispatch_head_dim(head_dim, [&](auto d) {
    const SimtKernel simt = simt_kernel_for<decltype(d)::value, KvFloat16>(query_rows);
    return kernel_occupancy(simt.kernel, simt.threads, card);
  });
}

void settle_decode_paddings(int head_dim, const sm7x::CardLimits& card) {
  dispatch_head_dim(head_dim, [&](auto d) { settle_paddings<decltype(d)::value>(card); });
}

void launch_decode_simt(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  dispatch_head_dim(head_dim, [&](auto d) { launch_simt_for<decltype(d)::value>(p, emulated, stream); });
}

void launch_decode_merge(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  dispatch_head_dim(head_dim, [&](auto d) { launch_merge_for<decltype(d)::value>(p, emulated, stream); });
}

}  // namespace flash_v100
