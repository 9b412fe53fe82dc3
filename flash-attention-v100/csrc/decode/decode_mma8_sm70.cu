// The 8-row tensor-core decode kernel, Volta path (mma.m8n8k4: legal on every arch >= 7.0). What both
// paths share, and why, is in decode_mma8.cuh. Here a warp's four quad pairs each run their own 8x8x4
// product, and the 8 query rows are exactly a product's M:
// - each quad pair takes 64 dims of head_dim and 8 keys of the stage (head_dim 256: the four pairs split
//   the dims of the same 8 keys; 128: two dim halves x two key groups; 64: four key groups), so every
//   lane holds its query row's 64 dims (32 registers) and loads its key column's 64 dims of K (128 bytes);
// - scores S = Q K^T per quad pair over its dims, summed over the pairs that split head_dim (two lane
//   shuffles of the 8 accumulators), so the pairs of one key group hold the same S;
// - P goes through 128 bytes of shared memory per warp and key group (S's accumulator and P's A fragment
//   pair rows and keys differently); O = P V, V's B fragment pairing two keys' halves of one dim (PRMT)
//   from 8 keys' 16-byte loads of the lane's 8 dims, whose cache addresses come by shuffle from the lanes
//   that load those keys' K. S's and O's accumulators hold the same two query rows per lane, so the
//   softmax rescales O without a shuffle;
// - at the end the key groups' outputs (on one scale: the row maxima are shared across key groups at every
//   stage) are summed by shuffles, and each lane of key group 0 holds 8 consecutive dims of 4 column
//   vectors of two query rows.
#include "core/mma_sm70.h"
#include "decode/decode_mma8.cuh"

namespace flash_v100 {
namespace {

namespace mma = sm7x::sm70;

template <int kHeadDim>
struct Mma8VoltaLayout {
  static constexpr int kDimParts = kHeadDim / 64;     // quad pairs that split head_dim, 64 dims each
  static constexpr int kKeyGroups = 4 / kDimParts;    // quad pairs that split a stage's keys, 8 each
  static constexpr int kStageKeys = 8 * kKeyGroups;
  static constexpr int kVecs = 8;                     // 16-byte vectors of a quad pair's 64 dims (per key)
  static constexpr int kOTiles = 8;                   // n tiles of O: 8 columns of 8 dims each
};

template <int kHeadDim, class Kv>
__global__ void __launch_bounds__(kMma8Threads) decode_mma8_sm70_kernel(const DecodeParams p) {
  using L = Mma8VoltaLayout<kHeadDim>;
  __shared__ Mma8Shared<kHeadDim> shared;
  __shared__ __align__(16) __half p_s[kMma8Warps][kMma8Rows][L::kStageKeys];

  DecodeCta cta;
  if (!decode_cta<kMma8Rows>(p, cta)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pair = mma::quad_pair(lane), i8 = mma::a_row(lane);  // i8: A's row, B's column
  const int dim_part = pair % L::kDimParts, key_group = pair / L::kDimParts, dims0 = dim_part * 64;
  // S's and O's accumulator rows of this lane (c_row for i & 2 == 0 and 2), and their query positions.
  const int rows[2] = {mma::c_row(lane, 0), mma::c_row(lane, 2)};
  bool row_valid[2];
  int q_pos[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    row_valid[e] = cta.first_row + rows[e] <= cta.last_row;
    q_pos[e] = cta.q_pos(cta.first_row + rows[e]);
  }

  // Stage loads: K of key t0 + key_group*8 + i8, dims dims0 + v*8..; V of keys t0 + key_group*8 + k (k < 8),
  // dims dims0 + i8*8.., its rows' addresses shuffled from the lanes that load those keys' K.
  using Element = typename Kv::Element;
  uint4 k_frag[L::kVecs], v_frag[8];
  const Element* v_row_next = nullptr;  // of this lane's K key in the stage whose V loads next
  auto fetch_k = [&](int t0) {
    const int t = t0 + key_group * 8 + i8;
    const bool in_range = t < cta.t_end;
    const KvSlot slot = in_range ? kv_slot(p, cta.b, t) : KvSlot{0, 0};
#pragma unroll
    for (int v = 0; v < L::kVecs; ++v) {
      k_frag[v] = in_range ? read_k_vec<Kv>(p, slot, cta.kv_head, dims0 / 8 + v) : make_uint4(0, 0, 0, 0);
    }
    v_row_next = in_range ? v_row<Kv>(p, slot, cta.kv_head) : nullptr;
  };
  auto fetch_v = [&] {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int source = (lane & 0b01100) | (k & 3) | (k >> 2) << 4;  // the lane of this pair with a_row k
      const auto* row = reinterpret_cast<const Element*>(
          __shfl_sync(kMma8FullMask, reinterpret_cast<unsigned long long>(v_row_next), source));
      v_frag[k] = row != nullptr ? Kv::load8(row + dims0 + i8 * 8) : make_uint4(0, 0, 0, 0);
    }
  };
  constexpr int kStride = kMma8Warps * L::kStageKeys;
  int t0 = cta.t_first + warp * L::kStageKeys;
  // The first stage's loads go out before anything else.
  fetch_k(t0);
  fetch_v();

  // Q's A fragments: row i8's dims dims0 + v*8 .. +7 (zeros past the last row).
  uint4 q_frag[L::kVecs] = {};
  if (cta.first_row + i8 <= cta.last_row) {  // one branch and one address for all of them
    const uint32_t* q_words = reinterpret_cast<const uint32_t*>(cta.q_row(p, cta.first_row + i8)) + dims0 / 2;
#pragma unroll
    for (int v = 0; v < L::kVecs; ++v) {
      q_frag[v] = make_uint4(q_words[4 * v], q_words[4 * v + 1], q_words[4 * v + 2], q_words[4 * v + 3]);
    }
  }

  float o[L::kOTiles][8] = {};  // O: rows c_row, dims dims0 + c_col * 8 + tile
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows[e]'s running max, this lane's part of its sum
  for (; t0 < cta.t_end; t0 += kStride) {
    const int t_next = t0 + kStride;
    // One accumulator: two (even and odd k steps), which made the Turing kernel 0.93-1.03x faster, made this
    // one 1.01-1.06x slower under sm70 emulation on the H200 (whose m8n8k4 says little of a V100's).
    float s[8] = {};
#pragma unroll
    for (int v = 0; v < L::kVecs; ++v) {
      mma::mma_m8n8k4(s, {q_frag[v].x, q_frag[v].y}, {k_frag[v].x, k_frag[v].y});
      mma::mma_m8n8k4(s, {q_frag[v].z, q_frag[v].w}, {k_frag[v].z, k_frag[v].w});
    }
    if (t_next < cta.t_end) fetch_k(t_next);  // K's registers are free: the next stage (and its V rows) lands meanwhile
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (L::kDimParts >= 2) s[i] += __shfl_xor_sync(kMma8FullMask, s[i], 4);
      if constexpr (L::kDimParts == 4) s[i] += __shfl_xor_sync(kMma8FullMask, s[i], 8);
    }

    // Online softmax: s[i] is row rows[i & 2 ? 1 : 0], key t0 + key_group*8 + c_col(lane, i).
    float stage_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = (i & 2) >> 1;
      float x = s[i] * p.scale;
      if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
      s[i] = decode_visible_at(p, cta, row_valid[e], q_pos[e], t0 + key_group * 8 + mma::c_col(lane, i)) ? x : -INFINITY;
      stage_max[e] = fmaxf(stage_max[e], s[i]);
    }
    float rescale[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      // The row's keys sit in lanes differing in bit 1 and in the key groups' pair bits.
      stage_max[e] = fmaxf(stage_max[e], __shfl_xor_sync(kMma8FullMask, stage_max[e], 2));
      if constexpr (L::kKeyGroups >= 2) {
        stage_max[e] = fmaxf(stage_max[e], __shfl_xor_sync(kMma8FullMask, stage_max[e], 8));
      }
      if constexpr (L::kKeyGroups == 4) {
        stage_max[e] = fmaxf(stage_max[e], __shfl_xor_sync(kMma8FullMask, stage_max[e], 4));
      }
      const float m_new = fmaxf(m[e], stage_max[e]);
      // A row with nothing visible yet keeps m = -inf, p = 0 and its zero sums (no inf - inf).
      rescale[e] = m[e] == -INFINITY ? 0.f : __expf(m[e] - m_new);
      l[e] *= rescale[e];
      m[e] = m_new;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = (i & 2) >> 1;
      s[i] = m[e] == -INFINITY ? 0.f : __expf(s[i] - m[e]);
      l[e] += s[i];
    }
    // Most stages raise no row's max (factor exactly 1), so the multiply is skipped when none did.
    if (__any_sync(kMma8FullMask, rescale[0] != 1.f || rescale[1] != 1.f)) {
#pragma unroll
      for (int t = 0; t < L::kOTiles; ++t) {
#pragma unroll
        for (int i = 0; i < 8; ++i) o[t][i] *= rescale[(i & 2) >> 1];
      }
    }

    // P to shared memory (one copy per key group: the pairs of dim part 0 write it), back as A fragments:
    // row i8, the key group's 8 keys (k steps of 4).
    __half(&p_row)[kMma8Rows][L::kStageKeys] = p_s[warp];
    __syncwarp();  // the previous stage's reads are done
    if (dim_part == 0) {
#pragma unroll
      for (int i = 0; i < 8; i += 2) {
        *reinterpret_cast<__half2*>(&p_row[rows[(i & 2) >> 1]][key_group * 8 + mma::c_col(lane, i)]) =
            __floats2half2_rn(s[i], s[i + 1]);
      }
    }
    __syncwarp();
    const uint4 p_frag = *reinterpret_cast<const uint4*>(&p_row[i8][key_group * 8]);

    // O += P V: n tile t holds dims dims0 + column*8 + t; k step h the keys 4h .. 4h+3 of the group.
#pragma unroll
    for (int t = 0; t < L::kOTiles; ++t) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t b0 = pair_halves(word(v_frag[4 * h], t / 2), word(v_frag[4 * h + 1], t / 2), t);
        const uint32_t b1 = pair_halves(word(v_frag[4 * h + 2], t / 2), word(v_frag[4 * h + 3], t / 2), t);
        mma::mma_m8n8k4(o[t], {h == 0 ? p_frag.x : p_frag.z, h == 0 ? p_frag.y : p_frag.w}, {b0, b1});
      }
    }
    if (t_next < cta.t_end) fetch_v();
  }

  // The key groups' outputs and sums: one scale (the maxima were shared at every stage), so plain sums.
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    l[e] += __shfl_xor_sync(kMma8FullMask, l[e], 2);
    if constexpr (L::kKeyGroups >= 2) l[e] += __shfl_xor_sync(kMma8FullMask, l[e], 8);
    if constexpr (L::kKeyGroups == 4) l[e] += __shfl_xor_sync(kMma8FullMask, l[e], 4);
  }
  if constexpr (L::kKeyGroups >= 2) {
#pragma unroll
    for (int t = 0; t < L::kOTiles; ++t) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        o[t][i] += __shfl_xor_sync(kMma8FullMask, o[t][i], 8);
        if constexpr (L::kKeyGroups == 4) o[t][i] += __shfl_xor_sync(kMma8FullMask, o[t][i], 4);
      }
    }
  }
  // The warps meet. Lanes 0, 1, 16 and 17 (pair 0, bit 1 clear) hold every row once: rows[0] and rows[1].
  if ((lane & 0b01110) == 0) {
#pragma unroll
    for (int e = 0; e < 2; ++e) shared.m[warp][rows[e]] = m[e], shared.l[warp][rows[e]] = l[e];
  }
  // This lane's outputs (key group 0): rows[e], columns c_col(lane, i) for i = 2e + {0, 1, 4, 5}, each the 8
  // dims dims0 + column*8 + t over the n tiles t.
  row_block_meet(p, cta, shared, warp, [&](auto&& fn) {
    if (key_group != 0) return;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = 2 * e + (c & 1) + (c & 2) * 2;
        float v[8];
#pragma unroll
        for (int t = 0; t < 8; ++t) v[t] = o[t][i];
        fn(rows[e], dims0 + mma::c_col(lane, i) * 8, v);
      }
    }
  });
}

}  // namespace

template <>
struct Mma8Kernel<sm7x::Sm70> : Mma8KernelTraits {
  template <class D, class Kv>
  DecodeKernel operator()(D, Kv) const {
    return decode_mma8_sm70_kernel<D::value, Kv>;
  }
};

template void launch_decode_mma8<sm7x::Sm70>(const DecodeParams&, int, const sm7x::CardLimits*, cudaStream_t);
template DecodeOccupancy decode_mma8_occupancy<sm7x::Sm70>(int, const sm7x::CardLimits&);
template void settle_decode_mma8_paddings<sm7x::Sm70>(int, const sm7x::CardLimits&);

}  // namespace flash_v100
