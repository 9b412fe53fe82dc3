// What the 8-row tensor-core decode kernels of both arch paths share (decode_mma8_sm70.cu: m8n8k4,
// decode_mma8_sm75.cu: m16n8k8): the CTA's shape, the fragment helpers, the warps' meeting at the end,
// and the host side (launch, occupancy, paddings).
//
// Why these kernels: the SIMT kernel spends one FMA per query row on every K and V element, and each of its
// warps reads and widens the whole shared-memory tile again; the 16-row tensor-core kernel meets its four
// warps' partial scores in shared memory and waits at four barriers per 16 keys. Both were bound by issue
// and latency at the cards' few CTAs per SM (0.19-0.30 of copy bandwidth on the H200, docs/benchmarks.md).
// Here a CTA holds 8 query rows (plain decode at GQA groups of up to 8: Qwen3.6's 6 query heads per KV
// head) and every warp works alone on its own stages of keys, with no shared memory and no barrier in its
// loop: K and V are loaded from the cache straight into mma fragments, one stage ahead of their use, in a
// head_dim order that both operands of each product share. The CTA's four warps take every 4th stage of
// its split and meet once at the end: their maxima and sums, then their outputs, scaled to the CTA's
// maxima, summed in shared memory in a fixed order (deterministic). The epilogue runs once per CTA, and at
// short contexts (one stage per warp) its instructions are most of a CTA's time, so it is kept short: two
// barriers, each thread finishing 1/16 of one row.
#pragma once
#include <cuda_fp16.h>

#include <cmath>

#include "core/int4.cuh"
#include "decode/decode_cta.cuh"
#include "paged_kv/read_kv.cuh"

namespace flash_v100 {

constexpr int kMma8Warps = 4;  // warps per CTA, each on every 4th stage of keys
constexpr int kMma8Threads = kMma8Warps * 32;
constexpr unsigned kMma8FullMask = 0xffffffffu;

// {a.half[i], b.half[i]} for half index i of a word pair (i even: low halves): two keys' values of one dim,
// as the mma operands that run along keys take them.
__device__ __forceinline__ uint32_t pair_halves(uint32_t a, uint32_t b, int i) {
  return __byte_perm(a, b, i % 2 == 0 ? 0x5410 : 0x7632);
}
using sm7x::word;

// The warps' meeting: their row maxima and sums (m, l; the kernel fills them) and two fp32 slices of the 8
// rows' outputs (warps 0 and 1 write theirs, warps 2 and 3 add to them: 16 KB at head_dim 256, so a 64 KB
// Turing card still holds the two CTAs per SM the kernels' registers allow).
template <int kHeadDim>
struct Mma8Shared {
  float m[kMma8Warps][kMma8Rows], l[kMma8Warps][kMma8Rows];
  __align__(16) float o[2][kMma8Rows][kHeadDim];
};

// After each warp wrote its maxima and sums into s.m and s.l: for_each_vector(fn) calls fn(row, d0, v) for
// each of this lane's outputs (dims d0 .. d0 + 7 of the block's query row `row`, on this warp's scale; a
// lane may have none). Writes out and lse, or the split's partials.
template <int kHeadDim, class ForEachVector>
__device__ __forceinline__ void mma8_meet(const DecodeParams& p, const DecodeCta& cta, Mma8Shared<kHeadDim>& s,
                                          ForEachVector&& for_each_vector) {
  __syncthreads();
  const int warp = threadIdx.x / 32;
  auto row_max = [&](int row) {
    float max = -INFINITY;
#pragma unroll
    for (int w = 0; w < kMma8Warps; ++w) max = fmaxf(max, s.m[w][row]);
    return max;
  };
  auto warp_factor = [&](int w, int row, float max) { return s.m[w][row] == -INFINITY ? 0.f : __expf(s.m[w][row] - max); };
  auto fold_into_slice = [&](bool add) {
    for_each_vector([&](int row, int d0, const float (&v)[8]) {
      const float factor = warp_factor(warp, row, row_max(row));
      float4* dst = reinterpret_cast<float4*>(&s.o[warp % 2][row][d0]);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float4 x = make_float4(v[4 * half] * factor, v[4 * half + 1] * factor, v[4 * half + 2] * factor,
                               v[4 * half + 3] * factor);
        if (add) {
          const float4 before = dst[half];
          x.x += before.x, x.y += before.y, x.z += before.z, x.w += before.w;
        }
        dst[half] = x;
      }
    });
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
  for (int w = 0; w < kMma8Warps; ++w) sum += warp_factor(w, out_row, max) * s.l[w][out_row];
  const float inv = sum > 0.f ? p.v_scale / sum : 0.f;  // nothing visible: zeros, lse -inf
  if (d0 == 0) *cta.lse(p, row) = sum > 0.f ? max + __logf(sum) : -INFINITY;
  float v[kDimsPerThread];
#pragma unroll
  for (int i = 0; i < kDimsPerThread; i += 4) {
    const float4 a = *reinterpret_cast<const float4*>(&s.o[0][out_row][d0 + i]);
    const float4 b = *reinterpret_cast<const float4*>(&s.o[1][out_row][d0 + i]);
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

// Host side. Each arch path's .cu specializes Mma8Kernel: its operator()(std::integral_constant<int, D>, Kv)
// gives the path's kernel for head_dim D and cache format Kv; the .cu then instantiates the three below.
template <class ArchTag>
struct Mma8Kernel;

template <class ArchTag>
void launch_decode_mma8(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  const int64_t query_rows = (int64_t)p.max_q_len * (p.q_heads / p.kv_heads);
  const dim3 grid(p.batch * ((query_rows + kMma8Rows - 1) / kMma8Rows), p.kv_heads, p.splits);
  dispatch_head_dim(head_dim, [&](auto d) {
    dispatch_kv_format(p.kv_format, [&](auto kv) {
      launch_as_card(Mma8Kernel<ArchTag>{}(d, kv), grid, kMma8Threads, emulated, stream, p);
    });
  });
}

template <class ArchTag>
DecodeOccupancy decode_mma8_occupancy(int head_dim, const sm7x::CardLimits& card) {
  return dispatch_head_dim(head_dim, [&](auto d) {
    return kernel_occupancy(Mma8Kernel<ArchTag>{}(d, KvFloat16{}), kMma8Threads, card);
  });
}

template <class ArchTag>
void settle_decode_mma8_paddings(int head_dim, const sm7x::CardLimits& card) {
  dispatch_head_dim(head_dim, [&](auto d) {
    for (const DecodeKernel kernel : {Mma8Kernel<ArchTag>{}(d, KvFloat16{}), Mma8Kernel<ArchTag>{}(d, KvFp8E5m2{})}) {
      sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(kernel), kMma8Threads);
    }
  });
}

}  // namespace flash_v100
