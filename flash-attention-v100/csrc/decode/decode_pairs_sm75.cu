// The pair kernel, Turing path only (m16n8k8; archs >= 7.5): the query rows of MTP verification (q_len x
// GQA group: 30 per KV head at Qwen3.6-27B's q_len 5) in blocks of 16 per CTA, where the 8-row kernel
// (decode_mma8_sm75.cu) takes blocks of 8 and reads every key once per block.
// Why 16 rows fit here: the 8-row kernel's S = Q K^T already runs m16n8k8 with rows 8-15 zero, so filling
// them costs no mma; what kept them out of one warp is O (16 rows x 256 dims of fp32: 128 registers per lane
// beside K, V and Q). So a block's rows belong to a warp pair, and each warp of the pair holds one half of
// head_dim of Q, K, V and O. It computes partial scores over its half; the pair adds the two halves through
// shared memory (one named barrier per stage, the buffers alternating by stage); both warps then run the
// same softmax on the same sums (float addition commutes: they agree bit for bit) and the product with V on
// their half of O. Per 8 keys and 16 rows that is 64 mma against the 8-row kernel's 96 for two blocks, and
// each K and V byte is loaded once per 16 rows instead of once per 8.
// The CTA's two pairs take every other stage of the split and meet at the end (row_block_meet).
// Fragment layouts are the 8-row kernel's, restricted to the warp's half of head_dim; head_dim 128 or 256
// (at 64 a warp's V loads are one 64-dim chunk per key, which a pair cannot split).
#include "core/mma_sm75.h"
#include "decode/decode_mma8.cuh"
#include "decode/turing_kv_fragments.cuh"

namespace flash_v100 {
namespace {

constexpr int kPairs = kMma8Warps / 2;

template <int kHeadDim>
struct PairLayout {
  static constexpr int kHalfDim = kHeadDim / 2;       // warp `half` of a pair: dims half * kHalfDim ..
  static constexpr int kKeyTiles = 2;                 // 8-key mma tiles per stage
  static constexpr int kStageKeys = 8 * kKeyTiles;
  static constexpr int kDimChunks32 = kHalfDim / 32;  // K loads per key tile: 8 dims per lane quad member
  static constexpr int kDimChunks64 = kHalfDim / 64;  // V loads per key of a pair: 8 dims per lane group
  static constexpr int kOTiles = kHalfDim / 16;       // m tiles of O^T
};

template <int kHeadDim>
struct PairShared {
  RowBlockShared<kPairRows, kPairs, 1, kHeadDim> meet;
  // Partial scores by pair, stage parity and warp: each lane's S accumulators, per key tile.
  float4 scores[kPairs][2][2][PairLayout<kHeadDim>::kKeyTiles][32];
};

// The two warps of pair `pair` (warps 2 * pair and 2 * pair + 1) wait for each other, on barrier 1 or 2
// (0 is __syncthreads'; immediate ids, so the kernel reserves 3 barriers, not all 16).
__device__ __forceinline__ void pair_barrier(int pair) {
  if (pair == 0) {
    asm volatile("bar.sync 1, 64;\n" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 64;\n" ::: "memory");
  }
}

template <int kHeadDim, class Kv>
__global__ void __launch_bounds__(kMma8Threads) decode_pairs_sm75_kernel(const DecodeParams p) {
  using L = PairLayout<kHeadDim>;
  __shared__ PairShared<kHeadDim> shared;

  DecodeCta cta;
  if (!decode_cta<kPairRows>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pair = warp / 2, half = warp % 2;
  const int g = sm7x::sm75::group(lane), q = lane % 4;  // g: query rows g and g + 8 of S, a dim row of O^T
  const int first_vec = half * L::kHalfDim / 8;         // this warp's first 8-dim vector of a K or V row

  // Stage loads: K of key t0 + 8h + g, dims c*32 + q*8..; V of keys t0 + 8h + 2q (+1), dims c*64 + g*8..
  // (dims counted from the warp's half).
  uint4 k_frag[L::kKeyTiles][L::kDimChunks32], v_frag[L::kKeyTiles][2][L::kDimChunks64];
  auto fetch_k = [&](int t0) { fetch_k_fragments<Kv>(k_frag, p, cta, t0, first_vec, g, q); };
  auto fetch_v = [&](int t0) { fetch_v_fragments<Kv>(v_frag, p, cta, t0, first_vec, g, q); };
  constexpr int kStride = kPairs * L::kStageKeys;
  int t0 = cta.t_first + pair * L::kStageKeys;
  // The first stage's loads go out before anything else.
  if (t0 < cta.t_end) {
    fetch_k(t0);
    fetch_v(t0);
  }

  // Q's A fragments: rows g (a[0]) and g + 8 (a[1]), the half's dims c*32 + q*8 + 2k, +1 for k step k;
  // zeros past the last row.
  bool row_valid[2];
  int q_pos[2];
  uint32_t q_frag[L::kDimChunks32][4][2] = {};
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const int r = cta.first_row + g + 8 * rh;
    row_valid[rh] = r <= cta.last_row;
    q_pos[rh] = cta.q_pos(r);
    if (row_valid[rh]) {
      const uint32_t* q_words = reinterpret_cast<const uint32_t*>(cta.q_row(p, r)) + half * L::kHalfDim / 2;
#pragma unroll
      for (int c = 0; c < L::kDimChunks32; ++c) {
#pragma unroll
        for (int s = 0; s < 4; ++s) q_frag[c][s][rh] = q_words[c * 16 + q * 4 + s];
      }
    }
  }

  float o[L::kOTiles][2][4] = {};  // O^T of the half's dims: dims (tile, g / g + 8), query rows 8rh + 2q, + 1
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows g + 8rh: running max, this lane's sum part
  for (int parity = 0; t0 < cta.t_end; t0 += kStride, parity ^= 1) {
    const int t_next = t0 + kStride;
    // Partial scores over the half's dims; two accumulators per key tile (even and odd k steps), as in
    // the 8-row kernel.
    float s[L::kKeyTiles][4] = {}, s_odd[L::kKeyTiles][4] = {};
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int c = 0; c < L::kDimChunks32; ++c) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t a[2] = {q_frag[c][k][0], q_frag[c][k][1]};
          sm7x::sm75::mma_m16n8k8(k % 2 == 0 ? s[h] : s_odd[h], a, word(k_frag[h][c], k));
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) s[h][i] += s_odd[h][i];
    }
    if (t_next < cta.t_end) fetch_k(t_next);  // K's registers are free: the next stage lands meanwhile

    // The pair's halves meet: each warp adds the other's partial scores. From here on both warps must
    // compute bit for bit the same (own + other commutes), so that their m, l and P agree: only warp
    // half 0 publishes m and l, and each half's O is on that scale.
    float4(&exchange)[2][L::kKeyTiles][32] = shared.scores[pair][parity];
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) exchange[half][h][lane] = make_float4(s[h][0], s[h][1], s[h][2], s[h][3]);
    pair_barrier(pair);
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
      const float4 other = exchange[half ^ 1][h][lane];
      s[h][0] += other.x, s[h][1] += other.y, s[h][2] += other.z, s[h][3] += other.w;
    }

    // Online softmax of rows g + 8rh over this stage's keys t0 + 8h + 2q + e (s[h][2rh + e]).
    float stage_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int rh = 0; rh < 2; ++rh) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float x = s[h][2 * rh + e] * p.scale;
          if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
          s[h][2 * rh + e] = decode_visible_at(p, cta, row_valid[rh], q_pos[rh], t0 + 8 * h + 2 * q + e) ? x : -INFINITY;
          stage_max[rh] = fmaxf(stage_max[rh], s[h][2 * rh + e]);
        }
      }
    }
    float rescale[2];
    uint32_t p_frag[L::kKeyTiles][2];
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      stage_max[rh] = fmaxf(stage_max[rh], __shfl_xor_sync(kMma8FullMask, stage_max[rh], 1));
      stage_max[rh] = fmaxf(stage_max[rh], __shfl_xor_sync(kMma8FullMask, stage_max[rh], 2));
      const float m_new = fmaxf(m[rh], stage_max[rh]);
      // A row with nothing visible yet keeps m = -inf, p = 0 and its zero sums (no inf - inf).
      rescale[rh] = m[rh] == -INFINITY ? 0.f : __expf(m[rh] - m_new);
#pragma unroll
      for (int h = 0; h < L::kKeyTiles; ++h) {
        const float p0 = m_new == -INFINITY ? 0.f : __expf(s[h][2 * rh] - m_new);
        const float p1 = m_new == -INFINITY ? 0.f : __expf(s[h][2 * rh + 1] - m_new);
        l[rh] = l[rh] * (h == 0 ? rescale[rh] : 1.f) + (p0 + p1);
        const __half2 pair_p = __floats2half2_rn(p0, p1);
        p_frag[h][rh] = *reinterpret_cast<const uint32_t*>(&pair_p);
      }
      m[rh] = m_new;
    }
    // The columns of O^T's half rh are query rows 8rh + 2q and + 1: their factors live in lane groups 2q and
    // 2q + 1. Most stages raise no row's max (factor exactly 1), so the multiply is skipped when none did.
    float factor[2][2];
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      factor[rh][0] = __shfl_sync(kMma8FullMask, rescale[rh], 8 * q);
      factor[rh][1] = __shfl_sync(kMma8FullMask, rescale[rh], 8 * q + 4);
    }
    if (__any_sync(kMma8FullMask, factor[0][0] != 1.f || factor[0][1] != 1.f || factor[1][0] != 1.f || factor[1][1] != 1.f)) {
#pragma unroll
      for (int j = 0; j < L::kOTiles; ++j) {
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
          o[j][rh][0] *= factor[rh][0], o[j][rh][1] *= factor[rh][1];
          o[j][rh][2] *= factor[rh][0], o[j][rh][3] *= factor[rh][1];
        }
      }
    }

    // O^T += V^T P^T: m tile (c, i) holds the half's dims c*64 + g*8 + i (rows g) and + i + 4 (rows g + 8);
    // one V^T fragment serves both row halves.
#pragma unroll
    for (int h = 0; h < L::kKeyTiles; ++h) {
#pragma unroll
      for (int c = 0; c < L::kDimChunks64; ++c) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t a[2];
          v_transposed_fragment(a, v_frag[h], c, i);
#pragma unroll
          for (int rh = 0; rh < 2; ++rh) sm7x::sm75::mma_m16n8k8(o[c * 4 + i][rh], a, p_frag[h][rh]);
        }
      }
    }
    if (t_next < cta.t_end) fetch_v(t_next);
  }

  // The pairs meet: rows g + 8rh's max and sum (this lane's part, then its quad's); both warps of a pair
  // hold the same ones.
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    l[rh] += __shfl_xor_sync(kMma8FullMask, l[rh], 1);
    l[rh] += __shfl_xor_sync(kMma8FullMask, l[rh], 2);
    if (half == 0 && q == 0) shared.meet.m[pair][g + 8 * rh] = m[rh], shared.meet.l[pair][g + 8 * rh] = l[rh];
  }
  // This lane's outputs: query rows 8rh + 2q + e, the half's dims c*64 + g*8 + j (j < 4: tile j's rows g,
  // else tile j - 4's rows g + 8).
  row_block_meet(p, cta, shared.meet, pair, [&](auto&& fn) {
#pragma unroll
    for (int c = 0; c < L::kDimChunks64; ++c) {
#pragma unroll
      for (int rh = 0; rh < 2; ++rh) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float v[8];
#pragma unroll
          for (int j = 0; j < 4; ++j) v[j] = o[c * 4 + j][rh][e], v[j + 4] = o[c * 4 + j][rh][2 + e];
          fn(8 * rh + 2 * q + e, half * L::kHalfDim + c * 64 + g * 8, v);
        }
      }
    }
  });
}

}  // namespace

struct PairKernel {
  static constexpr int kRows = kPairRows;
  static constexpr bool has_head_dim(int head_dim) { return head_dim >= 128; }
  static constexpr const char* kHeadDimRule =
      "the pair decode kernel takes head_dim 128 or 256 (a warp pair splits each key's 64-dim V loads)";
  template <class D, class Kv>
  DecodeKernel operator()(D, Kv) const {
    return decode_pairs_sm75_kernel<D::value, Kv>;
  }
};

template <>
void launch_decode_pairs<sm7x::Sm75>(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated,
                                     cudaStream_t stream) {
  launch_row_blocks<PairKernel>(p, head_dim, emulated, stream);
}
template <>
DecodeOccupancy decode_pairs_occupancy<sm7x::Sm75>(int head_dim, const sm7x::CardLimits& card) {
  return row_blocks_occupancy<PairKernel>(head_dim, card);
}
template <>
void settle_decode_pairs_paddings<sm7x::Sm75>(int head_dim, const sm7x::CardLimits& card) {
  settle_row_blocks_paddings<PairKernel>(head_dim, card);
}

}  // namespace flash_v100
