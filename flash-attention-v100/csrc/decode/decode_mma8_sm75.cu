// Tensor-core decode for blocks of 8 query rows (plain decode at GQA groups of up to 8: Qwen3.6's 6 query
// heads per KV head), Turing path (m16n8k8; archs >= 7.5 only).
//
// Why: the SIMT kernel spends one FMA per query row on every K and V element, and each of its warps
// reads and widens the whole shared-memory tile again; the 16-row tensor-core kernel meets its four
// warps' partial scores in shared memory and waits at four barriers per 16 keys. Both were bound by issue
// and latency at the cards' few CTAs per SM (0.19-0.30 of copy bandwidth on the H200, docs/benchmarks.md).
// Here every warp works alone on its own stages of keys, with no shared memory and no barrier in the loop:
// - K and V are loaded from the cache straight into mma fragments (16-byte loads, coalesced over 64- or
//   128-byte runs of one key), one stage ahead of their use;
// - scores S = Q K^T on m16n8k8 with the 8 query rows as M (rows 8-15 zero: tensor cores have the
//   throughput to spare), head_dim as K in a permuted order that both operands share (lane quad q holds
//   the 8 consecutive dims q*8.. of each 32, so one 16-byte load feeds four k steps);
// - O^T += V^T P^T, so that P's B fragment is S's accumulator as it stands (row g, keys 2q and 2q+1) and
//   all four accumulator registers hold real outputs; V^T's A fragment pairs two keys' halves (PRMT), and
//   each lane ends with 8 consecutive output dims of two query rows.
// The CTA's warps take every 4th stage of its split and meet once at the end: their maxima and sums, then
// their outputs, scaled to the CTA's maxima, summed in shared memory in a fixed order (deterministic).
// The epilogue runs once per CTA, and at short contexts (one stage per warp) its instructions are most of
// a CTA's time, so it is kept short: two barriers, each thread finishing 1/16 of one row.
#include <cuda_fp16.h>

#include "core/mma_sm75.h"
#include "decode/decode_cta.cuh"
#include "paged_kv/read_kv.cuh"

namespace flash_v100 {
namespace {

constexpr int kMma8Rows = 8;   // query rows per CTA: the scores' M (of 16) that carries rows
constexpr int kMma8Warps = 4;  // warps per CTA, each on every 4th stage of keys
constexpr unsigned kFullMask = 0xffffffffu;

template <int kHeadDim>
struct Mma8Layout {
  static constexpr int kKeyTiles = kHeadDim == 256 ? 1 : 2;  // 8-key mma tiles per stage (registers)
  static constexpr int kStageKeys = 8 * kKeyTiles;
  static constexpr int kDimChunks32 = kHeadDim / 32;  // K loads per key tile: 8 dims per lane quad member
  static constexpr int kDimChunks64 = kHeadDim / 64;  // V loads per key of a pair: 8 dims per lane group
  static constexpr int kOTiles = kHeadDim / 16;       // m tiles of O^T: 4 per 64 dims
  static constexpr int kThreads = kMma8Warps * 32;
};

// {a.half[i], b.half[i]} for half index i of a word pair (i even: low halves).
__device__ __forceinline__ uint32_t pair_halves(uint32_t a, uint32_t b, int i) {
  return __byte_perm(a, b, i % 2 == 0 ? 0x5410 : 0x7632);
}
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

template <int kHeadDim, class Kv>
__global__ void __launch_bounds__(Mma8Layout<kHeadDim>::kThreads) decode_mma8_kernel(const DecodeParams p) {
  using L = Mma8Layout<kHeadDim>;
  __shared__ float m_s[kMma8Warps][kMma8Rows], l_s[kMma8Warps][kMma8Rows];
  // Two slices: warps 0 and 1 write theirs, warps 2 and 3 add to them (16 KB at head_dim 256, so a 64 KB
  // Turing card still holds the two CTAs per SM its registers allow).
  __shared__ __align__(16) float o_s[2][kMma8Rows][kHeadDim];

  DecodeCta cta;
  if (!decode_cta<kMma8Rows>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = sm7x::sm75::group(lane), q = lane % 4;  // g: a query row of S, a dim row of O^T

  // Stage loads: K of key t0 + 8h + g, dims c*32 + q*8..; V of keys t0 + 8h + 2q (+1), dims c*64 + g*8..
  uint4 k_frag[L::kKeyTiles][L::kDimChunks32], v_frag[L::kKeyTiles][2][L::kDimChunks64];
  auto fetch_k = [&](int t0) {
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
      const int t = t0 + 8 * h + g;
      const bool in_range = t < cta.t_end;
      const KvSlot slot = in_range ? kv_slot(p, cta.b, t) : KvSlot{0, 0};
#pragma unroll
      for (int c = 0; c < L::kDimChunks32; ++c) {
        k_frag[h][c] = in_range ? read_k_vec<Kv>(p, slot, cta.kv_head, c * 4 + q) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto fetch_v = [&](int t0) {
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int t = t0 + 8 * h + 2 * q + e;
        const bool in_range = t < cta.t_end;
        const KvSlot slot = in_range ? kv_slot(p, cta.b, t) : KvSlot{0, 0};
#pragma unroll
        for (int c = 0; c < L::kDimChunks64; ++c) {
          v_frag[h][e][c] = in_range ? read_v_vec<Kv>(p, slot, cta.kv_head, c * 8 + g) : make_uint4(0, 0, 0, 0);
        }
      }
    }
  };
  constexpr int kStride = kMma8Warps * L::kStageKeys;
  int t0 = cta.t_first + warp * L::kStageKeys;
  // The first stage's loads go out before anything else.
  if (t0 < cta.t_end) {
    fetch_k(t0);
    fetch_v(t0);
  }

  // Q's A fragments: row g's dims c*32 + q*8 .. +7, as four half2 words (k steps); zeros past the last row.
  const int r = cta.first_row + g;
  const bool row_valid = r <= cta.last_row;
  const int q_pos = cta.q_pos(r);
  uint32_t q_frag[L::kDimChunks32][4] = {};
  if (row_valid) {  // one branch and one address for all of them (per-load selects cost ~800 instructions)
    const uint32_t* q_words = reinterpret_cast<const uint32_t*>(cta.q_row(p, r));
#pragma unroll
    for (int c = 0; c < L::kDimChunks32; ++c) {
#pragma unroll
      for (int s = 0; s < 4; ++s) q_frag[c][s] = q_words[c * 16 + q * 4 + s];
    }
  }

  float o[L::kOTiles][4] = {};  // O^T: dims (tile, g / g + 8), query rows 2q, 2q + 1
  float m = -INFINITY, l = 0.f;  // row g's running max and this lane's part of its sum
  for (; t0 < cta.t_end; t0 += kStride) {
    const int t_next = t0 + kStride;
    float s[L::kKeyTiles][4] = {};
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int c = 0; c < L::kDimChunks32; ++c) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t a[2] = {q_frag[c][k], 0u};
          sm7x::sm75::mma_m16n8k8(s[h], a, word(k_frag[h][c], k));
        }
      }
    }
    if (t_next < cta.t_end) fetch_k(t_next);  // K's registers are free: the next stage lands meanwhile

    // Online softmax of row g over this stage's keys t0 + 8h + 2q + e (s[h][e]; s[h][2..3] are rows 8-15).
    float stage_max = -INFINITY;
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = s[h][e] * p.scale;
        if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
        s[h][e] = decode_visible_at(p, cta, row_valid, q_pos, t0 + 8 * h + 2 * q + e) ? x : -INFINITY;
        stage_max = fmaxf(stage_max, s[h][e]);
      }
    }
    stage_max = fmaxf(stage_max, __shfl_xor_sync(kFullMask, stage_max, 1));
    stage_max = fmaxf(stage_max, __shfl_xor_sync(kFullMask, stage_max, 2));
    const float m_new = fmaxf(m, stage_max);
    // A row with nothing visible yet keeps m = -inf, p = 0 and its zero sums (no inf - inf).
    const float rescale = m == -INFINITY ? 0.f : __expf(m - m_new);
    uint32_t p_frag[L::kKeyTiles];
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
      const float p0 = m_new == -INFINITY ? 0.f : __expf(s[h][0] - m_new);
      const float p1 = m_new == -INFINITY ? 0.f : __expf(s[h][1] - m_new);
      l = l * (h == 0 ? rescale : 1.f) + (p0 + p1);
      const __half2 pair = __floats2half2_rn(p0, p1);
      p_frag[h] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    m = m_new;
    // O^T's columns are query rows 2q and 2q + 1: their factors live in lane groups 2q and 2q + 1. Most
    // stages raise no row's max (factor exactly 1), so the multiply is skipped when none did.
    const float rescale0 = __shfl_sync(kFullMask, rescale, 8 * q), rescale1 = __shfl_sync(kFullMask, rescale, 8 * q + 4);
    if (__any_sync(kFullMask, rescale0 != 1.f || rescale1 != 1.f)) {
#pragma unroll
      for (int j = 0; j < L::kOTiles; ++j) {
        o[j][0] *= rescale0, o[j][1] *= rescale1, o[j][2] *= rescale0, o[j][3] *= rescale1;
      }
    }

    // O^T += V^T P^T: m tile (c, i) holds dims c*64 + g*8 + i (rows g) and + i + 4 (rows g + 8).
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int c = 0; c < L::kDimChunks64; ++c) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const uint32_t a[2] = {pair_halves(word(v_frag[h][0][c], i / 2), word(v_frag[h][1][c], i / 2), i),
                                 pair_halves(word(v_frag[h][0][c], 2 + i / 2), word(v_frag[h][1][c], 2 + i / 2), i)};
          sm7x::sm75::mma_m16n8k8(o[c * 4 + i], a, p_frag[h]);
        }
      }
    }
    if (t_next < cta.t_end) fetch_v(t_next);
  }

  // The warps meet: row maxima and sums first.
  l += __shfl_xor_sync(kFullMask, l, 1);
  l += __shfl_xor_sync(kFullMask, l, 2);
  if (q == 0) m_s[warp][g] = m, l_s[warp][g] = l;
  __syncthreads();
  // This lane's outputs (query rows 2q + e, dims c*64 + g*8 + j; j < 4: tile j's rows g, else tile j - 4's
  // rows g + 8), scaled from this warp's max to the CTA's, into slice warp % 2: warps 0 and 1 write, then
  // warps 2 and 3 add.
  auto row_max = [&](int row) {
    float max = -INFINITY;
#pragma unroll
    for (int w = 0; w < kMma8Warps; ++w) max = fmaxf(max, m_s[w][row]);
    return max;
  };
  auto warp_factor = [&](int w, int row, float max) {
    return m_s[w][row] == -INFINITY ? 0.f : __expf(m_s[w][row] - max);
  };
  float factor[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) factor[e] = warp_factor(warp, 2 * q + e, row_max(2 * q + e));
  auto fold_into_slice = [&](bool add) {
#pragma unroll
    for (int c = 0; c < L::kDimChunks64; ++c) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float4* dst = reinterpret_cast<float4*>(&o_s[warp % 2][2 * q + e][c * 64 + g * 8]);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          float4 v = make_float4(o[c * 4 + 0][2 * half + e], o[c * 4 + 1][2 * half + e], o[c * 4 + 2][2 * half + e],
                                 o[c * 4 + 3][2 * half + e]);
          v.x *= factor[e], v.y *= factor[e], v.z *= factor[e], v.w *= factor[e];
          if (add) {
            const float4 before = dst[half];
            v.x += before.x, v.y += before.y, v.z += before.z, v.w += before.w;
          }
          dst[half] = v;
        }
      }
    }
  };
  if (warp < 2) fold_into_slice(false);
  __syncthreads();
  if (warp >= 2) fold_into_slice(true);
  __syncthreads();

  // Thread = (row, 1/16 of its dims): slice 0 + slice 1, divided by the row's sum.
  constexpr int kDimsPerThread = kHeadDim / 16;
  const int out_row = threadIdx.x / 16, d0 = threadIdx.x % 16 * kDimsPerThread, row = cta.first_row + out_row;
  if (row > cta.last_row) return;
  const float max = row_max(out_row);
  float sum = 0.f;
#pragma unroll
  for (int w = 0; w < kMma8Warps; ++w) sum += warp_factor(w, out_row, max) * l_s[w][out_row];
  const float inv = sum > 0.f ? p.v_scale / sum : 0.f;  // nothing visible: zeros, lse -inf
  if (d0 == 0) *cta.lse(p, row) = sum > 0.f ? max + __logf(sum) : -INFINITY;
  float v[kDimsPerThread];
#pragma unroll
  for (int i = 0; i < kDimsPerThread; i += 4) {
    const float4 a = *reinterpret_cast<const float4*>(&o_s[0][out_row][d0 + i]);
    const float4 b = *reinterpret_cast<const float4*>(&o_s[1][out_row][d0 + i]);
    v[i] = (a.x + b.x) * inv, v[i + 1] = (a.y + b.y) * inv, v[i + 2] = (a.z + b.z) * inv, v[i + 3] = (a.w + b.w) * inv;
  }
  if (p.splits == 1) {
    // Output rows are 4-byte aligned (the op checks no more): half2 stores.
    __half2* out = reinterpret_cast<__half2*>(p.out + cta.out_row(p, row) * kHeadDim + d0);
#pragma unroll
    for (int i = 0; i < kDimsPerThread / 2; ++i) out[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
  } else {
    float4* out = reinterpret_cast<float4*>(p.partial_out + cta.partial_row(p, row) * kHeadDim + d0);
#pragma unroll
    for (int i = 0; i < kDimsPerThread / 4; ++i) out[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
  }
}

template <int kHeadDim, class Kv>
constexpr DecodeKernel mma8_kernel() {
  return decode_mma8_kernel<kHeadDim, Kv>;
}

}  // namespace

void launch_decode_mma8(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  dispatch_head_dim(head_dim, [&](auto d) {
    constexpr int kHeadDim = decltype(d)::value;
    const int64_t query_rows = (int64_t)p.max_q_len * (p.q_heads / p.kv_heads);
    const dim3 grid(p.batch * ((query_rows + kMma8Rows - 1) / kMma8Rows), p.kv_heads, p.splits);
    dispatch_kv_format(p.kv_format, [&](auto kv) {
      launch_as_card(mma8_kernel<kHeadDim, decltype(kv)>(), grid, Mma8Layout<kHeadDim>::kThreads, emulated, stream, p);
    });
  });
}

DecodeOccupancy decode_mma8_occupancy(int head_dim, const sm7x::CardLimits& card) {
  return dispatch_head_dim(head_dim, [&](auto d) {
    constexpr int kHeadDim = decltype(d)::value;
    return kernel_occupancy(mma8_kernel<kHeadDim, KvFloat16>(), Mma8Layout<kHeadDim>::kThreads, card);
  });
}

void settle_decode_mma8_paddings(int head_dim, const sm7x::CardLimits& card) {
  dispatch_head_dim(head_dim, [&](auto d) {
    constexpr int kHeadDim = decltype(d)::value;
    for (const DecodeKernel kernel : {mma8_kernel<kHeadDim, KvFloat16>(), mma8_kernel<kHeadDim, KvFp8E5m2>()}) {
      sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(kernel), Mma8Layout<kHeadDim>::kThreads);
    }
  });
}

}  // namespace flash_v100
