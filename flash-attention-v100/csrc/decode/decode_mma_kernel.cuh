// Tensor-core decode attention (decode, MTP verification): the SIMT kernel's work split (one block of
// 16 query rows of one KV head, GQA-packed, and one split of its keys per CTA) with Q K^T and P V on
// WarpTile16x16<ArchTag> (m8n8k4 on Volta, m16n8k8 + ldmatrix on Turing). Why: the SIMT kernel spends
// one FMA per query row on every K and V element plus the shared-memory reads that feed it; at GQA's
// 6-8 rows per KV head its issue slots, not memory, bound it (ncu on the H200: 52% issue-busy at 8
// warps per SM, 0.2-0.3 of copy bandwidth). The mma does a row block's 16 rows at once.
//
// Per stage of 16 keys: K goes to shared memory; warp w scores the 16 rows against the 16 keys over
// its quarter of head_dim, and the four partial tiles meet in shared memory, where 8 threads per row
// run the online softmax (fp32) and write P (fp16) and the row's rescale factor, while V goes into
// the same buffer transposed (the mma's B operand rows are output columns); then warp w accumulates
// its quarter of the output columns, O = O * rescale + P V (head_dim / 64 16x16 tiles in registers).
// One K-then-V buffer keeps a CTA at 26 KB at head_dim 256: two per SM on a 64 KB Turing card, three on
// a V100. K and V are loaded into registers one stage ahead (register staging: no cp.async before
// SM80), each as soon as its buffer turn starts. Two stages ahead (32 more registers) measured 0.99x
// this form's time at MTP verification and still lost plain decode to the SIMT kernel (H200, sm75,
// benchmarks/results/attention-sm75-h200-2026-12-01-decode-kernels.json), so one it is.
//
// The two-group form (32 rows, 8 warps: warp w takes row group w / 4 and head_dim quarter w % 4) reads
// each stage once for both groups, where two 16-row CTAs read it twice: 39.5 KB at head_dim 256, one CTA
// per SM on a T4 (as many warps as two 16-row CTAs), two on a V100. It serves more than 16 rows per KV
// head: at MTP verification's 30 rows it took 0.56-0.98x the 16-row form's time at 32K+ context (H200,
// sm75, benchmarks/results/attention-sm75-h200-2026-12-01-mma32.json).
#pragma once
#include <cmath>

#include "core/warp_tile.cuh"
#include "decode/decode_cta.cuh"
#include "paged_kv/read_kv.cuh"
#include "softmax/online_softmax.cuh"

namespace flash_v100 {

constexpr int kMmaDecodeDimWarps = 4;  // warps that split head_dim, per group of 16 query rows
constexpr int kMmaDecodeRows = 16;     // query rows per row group: one warp tile's M
constexpr int kMmaDecodeKeys = 16;     // keys per stage: one warp tile's N
static_assert(kMmaDecodeRows == kDecodeRowsPerCta, "the one-group form is sized like the SIMT kernel's blocks");

// kRowGroups groups of 16 query rows per CTA share each stage of K and V: one group (16 rows), or two
// (32 rows: MTP verification's 30 rows of q_len 5 x 6 heads read the keys once instead of twice).
template <int kHeadDim, int kRowGroups>
struct MmaDecodeLayout {
  static constexpr int kWarps = kMmaDecodeDimWarps * kRowGroups;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = kMmaDecodeRows * kRowGroups;
  static constexpr int kPad = 8;  // halves: rows stay 16-byte aligned, and consecutive rows change banks
  static constexpr int kQStride = kHeadDim + kPad;
  static constexpr int kKStride = kHeadDim + kPad;
  static constexpr int kVtStride = kMmaDecodeKeys + kPad;
  static constexpr int kPStride = kMmaDecodeKeys + kPad;
  static constexpr int kSStride = kMmaDecodeKeys + 1;
  static constexpr int kKvHalves =
      kMmaDecodeKeys * kKStride > kHeadDim * kVtStride ? kMmaDecodeKeys * kKStride : kHeadDim * kVtStride;
  static constexpr int kDimsPerWarp = kHeadDim / kMmaDecodeDimWarps;  // scored and output columns per warp
  static constexpr int kOTiles = kDimsPerWarp / sm7x::kWarpTileN;
  static constexpr int kVecs = kHeadDim / 8;  // 8-half vectors per K or V row
  static constexpr int kStageVecs = kMmaDecodeKeys * kVecs;  // of K and of V
  static constexpr int kVecsPerThread = (kStageVecs + kThreads - 1) / kThreads;
  // Whether thread + i * kThreads is one of the stage's vectors (all are, but at head_dim 64 on 8 warps).
  __device__ static bool has_vec(int index) { return kStageVecs % kThreads == 0 || index < kStageVecs; }
  static_assert(kDimsPerWarp % sm7x::kWarpTileN == 0, "head_dim / 4 must be a multiple of 16");
};

template <class ArchTag, int kHeadDim, int kRowGroups, class Kv>
__global__ void __launch_bounds__(MmaDecodeLayout<kHeadDim, kRowGroups>::kThreads)
    decode_mma_kernel(const DecodeParams p) {
  using L = MmaDecodeLayout<kHeadDim, kRowGroups>;
  using Tile = sm7x::WarpTile16x16<ArchTag>;
  __shared__ __align__(16) __half q_s[L::kRows * L::kQStride];
  __shared__ __align__(16) __half kv_s[L::kKvHalves];  // K [key][dim], then V^T [dim][key]
  __shared__ float s_s[kMmaDecodeDimWarps][L::kRows][L::kSStride];  // partial scores per head_dim quarter
  __shared__ __align__(16) __half p_s[L::kRows * L::kPStride];
  __shared__ float rescale_s[L::kRows];

  DecodeCta cta;
  if (!decode_cta<L::kRows>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // This warp's group of 16 rows and quarter of head_dim (compile-time 0 and warp with one group).
  const int row0 = kRowGroups == 1 ? 0 : warp / kMmaDecodeDimWarps * kMmaDecodeRows;
  const int quarter = kRowGroups == 1 ? warp : warp % kMmaDecodeDimWarps;

  // This thread's vectors of a stage: vector index / keys of key index % keys (keys fastest: a warp
  // reads 32 contiguous bytes of each of 16 keys, and the transposed V stores spread over the banks).
  uint4 k_next[L::kVecsPerThread], v_next[L::kVecsPerThread];
  auto fetch = [&](uint4 (&dst)[L::kVecsPerThread], int t0, bool values) {
#pragma unroll
    for (int i = 0; i < L::kVecsPerThread; ++i) {
      const int index = threadIdx.x + i * L::kThreads, t = t0 + index % kMmaDecodeKeys;
      const int vec = index / kMmaDecodeKeys;
      dst[i] = make_uint4(0, 0, 0, 0);
      if (L::has_vec(index) && t < cta.t_end) {
        const KvSlot slot = kv_slot(p, cta.b, t);
        dst[i] = values ? read_v_vec<Kv>(p, slot, cta.kv_head, vec) : read_k_vec<Kv>(p, slot, cta.kv_head, vec);
      }
    }
  };
  // The first stage's loads go out before anything else.
  fetch(k_next, cta.t_first, false);
  fetch(v_next, cta.t_first, true);

  // Query rows (zeros past the last): half2 reads, since decode queries need only 4-byte alignment.
  for (int i = threadIdx.x; i < L::kRows * (kHeadDim / 2); i += L::kThreads) {
    const int row = i / (kHeadDim / 2), pair = i % (kHeadDim / 2), r = cta.first_row + row;
    const __half2 value =
        r <= cta.last_row ? reinterpret_cast<const __half2*>(cta.q_row(p, r))[pair] : __float2half2_rn(0.f);
    reinterpret_cast<__half2*>(q_s + row * L::kQStride)[pair] = value;
  }

  // The online softmax: thread = (row, two keys of the stage); 8 consecutive lanes share a row.
  const int sm_row = threadIdx.x / 8, sm_col = threadIdx.x % 8 * 2, sm_r = cta.first_row + sm_row;
  const bool row_valid = sm_r <= cta.last_row;
  OnlineSoftmaxRow<8> softmax;
  Tile o[L::kOTiles];

  // One stage: keys t0 .. t0 + 15.
  auto stage = [&](int t0) {
    const int t_refill = t0 + kMmaDecodeKeys;  // the stage whose loads go out as this one's are stored
    __syncthreads();  // the previous stage's P V is done with the buffer (and q_s is written, first time)
#pragma unroll
    for (int i = 0; i < L::kVecsPerThread; ++i) {
      const int index = threadIdx.x + i * L::kThreads;
      if (!L::has_vec(index)) continue;
      *reinterpret_cast<uint4*>(kv_s + index % kMmaDecodeKeys * L::kKStride + index / kMmaDecodeKeys * 8) =
          k_next[i];
    }
    __syncthreads();
    if (t_refill < cta.t_end) fetch(k_next, t_refill, false);  // lands during the stages before its own

    Tile s;
    const int d0 = quarter * L::kDimsPerWarp;
#pragma unroll
    for (int kk = 0; kk < L::kDimsPerWarp; kk += sm7x::kWarpTileK) {
      s.mma(q_s + row0 * L::kQStride + d0 + kk, L::kQStride, kv_s + d0 + kk, L::kKStride, lane);
    }
    s.for_each(lane, [&](int r, int c, float& v) { s_s[quarter][row0 + r][c] = v; });
    __syncthreads();  // partial scores written, K read by every warp

#pragma unroll
    for (int i = 0; i < L::kVecsPerThread; ++i) {
      const int index = threadIdx.x + i * L::kThreads, key = index % kMmaDecodeKeys;
      const int vec = index / kMmaDecodeKeys;
      if (!L::has_vec(index)) continue;
      const __half* v8 = reinterpret_cast<const __half*>(&v_next[i]);
#pragma unroll
      for (int e = 0; e < 8; ++e) kv_s[(vec * 8 + e) * L::kVtStride + key] = v8[e];
    }
    auto score = [&](int j) {
      const int c = sm_col + j;
      float v = (s_s[0][sm_row][c] + s_s[1][sm_row][c]) + (s_s[2][sm_row][c] + s_s[3][sm_row][c]);
      v *= p.scale;
      if (p.softcap > 0.f) v = p.softcap * tanhf(v / p.softcap);
      return decode_visible(p, cta, row_valid, sm_r, t0 + c) ? v : -INFINITY;
    };
    const float rescale = softmax.step<2>(score, p_s + sm_row * L::kPStride + sm_col);
    if (threadIdx.x % 8 == 0) rescale_s[sm_row] = rescale;
    __syncthreads();  // P, the rescale factors and V^T are in place
    if (t_refill < cta.t_end) fetch(v_next, t_refill, true);

#pragma unroll
    for (int j = 0; j < L::kOTiles; ++j) {
      o[j].for_each(lane, [&](int r, int, float& v) { v *= rescale_s[row0 + r]; });
#pragma unroll
      for (int kk = 0; kk < kMmaDecodeKeys; kk += sm7x::kWarpTileK) {
        o[j].mma(p_s + row0 * L::kPStride + kk, L::kPStride, kv_s + (d0 + j * sm7x::kWarpTileN) * L::kVtStride + kk,
                 L::kVtStride, lane);
      }
    }
  };
  for (int t0 = cta.t_first; t0 < cta.t_end; t0 += kMmaDecodeKeys) stage(t0);

  // out = O / l (zeros and lse -inf for a row that saw no key); rescale_s now holds 1 / l per row.
  __syncthreads();  // every warp is done with the last stage's rescale factors
  if (threadIdx.x % 8 == 0) {
    rescale_s[sm_row] = softmax.out_scale(p.v_scale);
    if (row_valid) *cta.lse(p, sm_r) = softmax.lse();
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < L::kOTiles; ++j) {
    o[j].for_each(lane, [&](int r, int c, float& v) {
      const int row = cta.first_row + row0 + r, d = quarter * L::kDimsPerWarp + j * sm7x::kWarpTileN + c;
      if (row > cta.last_row) return;
      if (p.splits == 1) {
        p.out[cta.out_row(p, row) * kHeadDim + d] = __float2half_rn(v * rescale_s[row0 + r]);
      } else {
        p.partial_out[cta.partial_row(p, row) * kHeadDim + d] = v * rescale_s[row0 + r];
      }
    });
  }
}

// Calls fn(std::integral_constant<int, G>{}) for the form of G groups of 16 query rows (1 or 2).
template <class Fn>
decltype(auto) dispatch_row_groups(int row_groups, Fn&& fn) {
  if (row_groups == 2) return fn(std::integral_constant<int, 2>{});
  return fn(std::integral_constant<int, 1>{});
}

template <class ArchTag>
void settle_decode_mma_paddings(int head_dim, const sm7x::CardLimits& card) {
  dispatch_head_dim(head_dim, [&](auto d) {
    constexpr int kHeadDim = decltype(d)::value;
    for (const int row_groups : {1, 2}) {
      dispatch_row_groups(row_groups, [&](auto g) {
        constexpr int kRowGroups = decltype(g)::value;
        for (const DecodeKernel kernel : {decode_mma_kernel<ArchTag, kHeadDim, kRowGroups, KvFloat16>,
                                          decode_mma_kernel<ArchTag, kHeadDim, kRowGroups, KvFp8E5m2>}) {
          sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(kernel),
                                   MmaDecodeLayout<kHeadDim, kRowGroups>::kThreads);
        }
      });
    }
  });
}

template <class ArchTag, int kHeadDim, int kRowGroups>
void launch_decode_mma_for(const DecodeParams& p, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  using L = MmaDecodeLayout<kHeadDim, kRowGroups>;
  const int64_t query_rows = (int64_t)p.max_q_len * (p.q_heads / p.kv_heads);
  const dim3 grid(p.batch * ((query_rows + L::kRows - 1) / L::kRows), p.kv_heads, p.splits);
  dispatch_kv_format(p.kv_format, [&](auto kv) {
    launch_as_card(decode_mma_kernel<ArchTag, kHeadDim, kRowGroups, decltype(kv)>, grid, L::kThreads, emulated,
                   stream, p);
  });
}

template <class ArchTag>
DecodeOccupancy decode_mma_occupancy(int head_dim, int row_groups, const sm7x::CardLimits& card) {
  return dispatch_head_dim(head_dim, [&](auto d) {
    return dispatch_row_groups(row_groups, [&](auto g) {
      constexpr int kHeadDim = decltype(d)::value, kRowGroups = decltype(g)::value;
      return kernel_occupancy(decode_mma_kernel<ArchTag, kHeadDim, kRowGroups, KvFloat16>,
                              MmaDecodeLayout<kHeadDim, kRowGroups>::kThreads, card);
    });
  });
}

template <class ArchTag>
void launch_decode_mma(const DecodeParams& p, int head_dim, int row_groups, const sm7x::CardLimits* emulated,
                       cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  dispatch_head_dim(head_dim, [&](auto d) {
    dispatch_row_groups(row_groups, [&](auto g) {
      launch_decode_mma_for<ArchTag, decltype(d)::value, decltype(g)::value>(p, emulated, stream);
    });
  });
}

}  // namespace flash_v100
