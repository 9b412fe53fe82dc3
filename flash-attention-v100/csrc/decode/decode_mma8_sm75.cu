// The 8-row tensor-core decode kernel, Turing path (m16n8k8; archs >= 7.5 only). What both paths share,
// and why, is in decode_mma8.cuh. Here:
// - K (key t0 + 8h + g per lane group g) and V (keys t0 + 8h + 2q and + 1 per lane quad member q) come in
//   16-byte loads, coalesced over 64- or 128-byte runs of one key;
// - scores S = Q K^T with the 8 query rows as M (rows 8-15 zero: tensor cores have the throughput to
//   spare), head_dim as K in a permuted order that both operands share (lane quad q holds the 8
//   consecutive dims q*8.. of each 32, so one 16-byte load feeds four k steps);
// - O^T += V^T P^T, so that P's B fragment is S's accumulator as it stands (row g, keys 2q and 2q+1) and
//   all four accumulator registers hold real outputs; V^T's A fragment pairs two keys' halves (PRMT), and
//   each lane ends with 8 consecutive output dims of two query rows.
#include "core/mma_sm75.h"
#include "decode/decode_mma8.cuh"
#include "decode/turing_kv_fragments.cuh"

namespace flash_v100 {
namespace {

template <int kHeadDim>
struct Mma8Layout {
  static constexpr int kKeyTiles = kHeadDim == 256 ? 1 : 2;  // 8-key mma tiles per stage (registers)
  static constexpr int kStageKeys = 8 * kKeyTiles;
  static constexpr int kDimChunks32 = kHeadDim / 32;  // K loads per key tile: 8 dims per lane quad member
  static constexpr int kDimChunks64 = kHeadDim / 64;  // V loads per key of a pair: 8 dims per lane group
  static constexpr int kOTiles = kHeadDim / 16;       // m tiles of O^T: 4 per 64 dims
};

template <int kHeadDim, class Kv>
__global__ void __launch_bounds__(kMma8Threads) decode_mma8_sm75_kernel(const DecodeParams p) {
  using L = Mma8Layout<kHeadDim>;
  __shared__ Mma8Shared<kHeadDim> shared;

  DecodeCta cta;
  if (!decode_cta<kMma8Rows>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = sm7x::sm75::group(lane), q = lane % 4;  // g: a query row of S, a dim row of O^T

  // Stage loads: K of key t0 + 8h + g, dims c*32 + q*8..; V of keys t0 + 8h + 2q (+1), dims c*64 + g*8..
  uint4 k_frag[L::kKeyTiles][L::kDimChunks32], v_frag[L::kKeyTiles][2][L::kDimChunks64];
  auto fetch_k = [&](int t0) { fetch_k_fragments<Kv>(k_frag, p, cta, t0, 0, g, q); };
  auto fetch_v = [&](int t0) { fetch_v_fragments<Kv>(v_frag, p, cta, t0, 0, g, q); };
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
    // Two accumulators per key tile (even and odd k steps): one would chain all head_dim / 8 mma of a tile
    // (0.93-1.03x the time, median 0.97x, benchmarks/results/attention-h200-2026-12-03-mma8-two-accumulators.json).
    float s[L::kKeyTiles][4] = {}, s_odd[L::kKeyTiles][4] = {};
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int c = 0; c < L::kDimChunks32; ++c) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t a[2] = {q_frag[c][k], 0u};
          sm7x::sm75::mma_m16n8k8(k % 2 == 0 ? s[h] : s_odd[h], a, word(k_frag[h][c], k));
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) s[h][i] += s_odd[h][i];  // rows 8-15 (i = 2, 3) are not used
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
    stage_max = fmaxf(stage_max, __shfl_xor_sync(kMma8FullMask, stage_max, 1));
    stage_max = fmaxf(stage_max, __shfl_xor_sync(kMma8FullMask, stage_max, 2));
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
    const float rescale0 = __shfl_sync(kMma8FullMask, rescale, 8 * q), rescale1 = __shfl_sync(kMma8FullMask, rescale, 8 * q + 4);
    if (__any_sync(kMma8FullMask, rescale0 != 1.f || rescale1 != 1.f)) {
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
          uint32_t a[2];
          v_transposed_fragment(a, v_frag[h], c, i);
          sm7x::sm75::mma_m16n8k8(o[c * 4 + i], a, p_frag[h]);
        }
      }
    }
    if (t_next < cta.t_end) fetch_v(t_next);
  }

  // The warps meet: row g's max and sum (this lane's part, then its quad's).
  l += __shfl_xor_sync(kMma8FullMask, l, 1);
  l += __shfl_xor_sync(kMma8FullMask, l, 2);
  if (q == 0) shared.m[warp][g] = m, shared.l[warp][g] = l;
  // This lane's outputs: query rows 2q + e, dims c*64 + g*8 + j (j < 4: tile j's rows g, else tile j - 4's
  // rows g + 8).
  row_block_meet(p, cta, shared, warp, [&](auto&& fn) {
#pragma unroll
    for (int c = 0; c < L::kDimChunks64; ++c) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float v[8];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = o[c * 4 + j][e], v[j + 4] = o[c * 4 + j][2 + e];
        fn(2 * q + e, c * 64 + g * 8, v);
      }
    }
  });
}

}  // namespace

template <>
struct Mma8Kernel<sm7x::Sm75> : Mma8KernelTraits {
  template <class D, class Kv>
  DecodeKernel operator()(D, Kv) const {
    return decode_mma8_sm75_kernel<D::value, Kv>;
  }
};

template void launch_decode_mma8<sm7x::Sm75>(const DecodeParams&, int, const sm7x::CardLimits*, cudaStream_t);
template DecodeOccupancy decode_mma8_occupancy<sm7x::Sm75>(int, const sm7x::CardLimits&);
template void settle_decode_mma8_paddings<sm7x::Sm75>(int, const sm7x::CardLimits&);

}  // namespace flash_v100
