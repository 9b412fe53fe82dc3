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
#include <type_traits>

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

// The warps' meeting at the end of the row-block kernels. Units are the groups of warps that work on
// separate stages of keys (the 8-row kernel: each of its 4 warps; the pair kernel, decode_pairs_sm75.cu:
// each of its 2 warp pairs); every unit holds running maxima and sums (m, l; the kernel fills them) of all
// kRows rows. Their outputs are folded into kSlices fp32 slices in rounds (units 0 .. kSlices - 1 write,
// the next kSlices add, ...): for the 8-row kernel two slices, 16 KB at head_dim 256, so a 64 KB Turing
// card still holds the two CTAs per SM the kernels' registers allow.
template <int kRows, int kUnits, int kSlices, int kHeadDim>
struct RowBlockShared {
  static constexpr int kBlockRows = kRows, kUnitCount = kUnits, kSliceCount = kSlices, kDim = kHeadDim;
  float m[kUnits][kRows], l[kUnits][kRows];
  __align__(16) float o[kSlices][kRows][kHeadDim];
};
template <int kHeadDim>
using Mma8Shared = RowBlockShared<kMma8Rows, kMma8Warps, 2, kHeadDim>;

// After each unit wrote its maxima and sums into s.m and s.l: for_each_vector(fn) calls fn(row, d0, v) for
// each of this lane's outputs (dims d0 .. d0 + 7 of the block's query row `row`, on this unit's scale; a
// lane may have none). Writes out and lse, or the split's partials; the sums run in a fixed order
// (deterministic).
template <class Shared, class ForEachVector>
__device__ __forceinline__ void row_block_meet(const DecodeParams& p, const DecodeCta& cta, Shared& s, int unit,
                                               ForEachVector&& for_each_vector) {
  constexpr int kRows = Shared::kBlockRows, kUnits = Shared::kUnitCount, kSlices = Shared::kSliceCount;
  constexpr int kHeadDim = Shared::kDim;
  static_assert(kUnits % kSlices == 0 && kMma8Threads % kRows == 0, "row_block_meet: shape");
  __syncthreads();
  auto row_max = [&](int row) {
    float max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kUnits; ++u) max = fmaxf(max, s.m[u][row]);
    return max;
  };
  auto unit_factor = [&](int u, int row, float max) { return s.m[u][row] == -INFINITY ? 0.f : __expf(s.m[u][row] - max); };
  // add: a compile-time flag, so that each product and its sum stay one fma.
  auto fold_into_slice = [&](auto add) {
    for_each_vector([&](int row, int d0, const float (&v)[8]) {
      const float factor = unit_factor(unit, row, row_max(row));
      float4* dst = reinterpret_cast<float4*>(&s.o[unit % kSlices][row][d0]);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float4 x = make_float4(v[4 * half] * factor, v[4 * half + 1] * factor, v[4 * half + 2] * factor,
                               v[4 * half + 3] * factor);
        if constexpr (decltype(add)::value) {
          const float4 before = dst[half];
          x.x += before.x, x.y += before.y, x.z += before.z, x.w += before.w;
        }
        dst[half] = x;
      }
    });
  };
  if (unit < kSlices) fold_into_slice(std::false_type{});
  __syncthreads();
#pragma unroll
  for (int round = 1; round < kUnits / kSlices; ++round) {
    if (unit / kSlices == round) fold_into_slice(std::true_type{});
    __syncthreads();
  }

  // Thread = (row, 1/kThreadsPerRow of its dims): the slices' sum, divided by the row's sum.
  constexpr int kThreadsPerRow = kMma8Threads / kRows, kDimsPerThread = kHeadDim / kThreadsPerRow;
  const int out_row = threadIdx.x / kThreadsPerRow, d0 = threadIdx.x % kThreadsPerRow * kDimsPerThread;
  const int row = cta.first_row + out_row;
  if (row > cta.last_row) return;
  const float max = row_max(out_row);
  float sum = 0.f;
#pragma unroll
  for (int u = 0; u < kUnits; ++u) sum += unit_factor(u, out_row, max) * s.l[u][out_row];
  const float inv = sum > 0.f ? p.v_scale / sum : 0.f;  // nothing visible: zeros, lse -inf
  if (d0 == 0) *cta.lse(p, row) = sum > 0.f ? max + __logf(sum) : -INFINITY;
  float v[kDimsPerThread];
#pragma unroll
  for (int i = 0; i < kDimsPerThread; i += 4) {
    float4 a = *reinterpret_cast<const float4*>(&s.o[0][out_row][d0 + i]);
#pragma unroll
    for (int slice = 1; slice < kSlices; ++slice) {
      const float4 b = *reinterpret_cast<const float4*>(&s.o[slice][out_row][d0 + i]);
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
    }
    v[i] = a.x * inv, v[i + 1] = a.y * inv, v[i + 2] = a.z * inv, v[i + 3] = a.w * inv;
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

// Host side of the row-block kernels (kMma8Threads threads per CTA). Kernels: Mma8Kernel<ArchTag> (each arch
// path's .cu specializes it) or PairKernel (decode_pairs_sm75.cu): Kernels::kRows query rows per CTA,
// Kernels::has_head_dim(D), and Kernels{}(std::integral_constant<int, D>, Kv) the kernel for head_dim D and
// cache format Kv. The .cu files instantiate the functions below for their kernels.
template <class Kernels, class Fn>
decltype(auto) dispatch_row_block_head_dim(int head_dim, Fn&& fn) {
  return dispatch_head_dim(head_dim, [&](auto d) -> decltype(fn(std::integral_constant<int, 256>{})) {
    if constexpr (Kernels::has_head_dim(decltype(d)::value)) {
      return fn(d);
    } else {
      throw std::invalid_argument(Kernels::kHeadDimRule);
    }
  });
}

template <class Kernels>
void launch_row_blocks(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  const int64_t query_rows = (int64_t)p.max_q_len * (p.q_heads / p.kv_heads);
  const dim3 grid(p.batch * ((query_rows + Kernels::kRows - 1) / Kernels::kRows), p.kv_heads, p.splits);
  dispatch_row_block_head_dim<Kernels>(head_dim, [&](auto d) {
    dispatch_kv_format(p.kv_format, [&](auto kv) {
      launch_as_card(Kernels{}(d, kv), grid, kMma8Threads, emulated, stream, p);
    });
  });
}

template <class Kernels>
DecodeOccupancy row_blocks_occupancy(int head_dim, const sm7x::CardLimits& card) {
  return dispatch_row_block_head_dim<Kernels>(head_dim, [&](auto d) {
    return kernel_occupancy(Kernels{}(d, KvFloat16{}), kMma8Threads, card);
  });
}

template <class Kernels>
void settle_row_blocks_paddings(int head_dim, const sm7x::CardLimits& card) {
  if (!Kernels::has_head_dim(head_dim)) return;  // the op refuses such calls before any launch
  dispatch_row_block_head_dim<Kernels>(head_dim, [&](auto d) {
    for (const DecodeKernel kernel : {Kernels{}(d, KvFloat16{}), Kernels{}(d, KvFp8E5m2{})}) {
      sm7x::emulated_occupancy(card, reinterpret_cast<const void*>(kernel), kMma8Threads);
    }
  });
}

// The 8-row kernel of each arch path: its .cu specializes Mma8Kernel<ArchTag> (every head_dim).
template <class ArchTag>
struct Mma8Kernel;
struct Mma8KernelTraits {
  static constexpr int kRows = kMma8Rows;
  static constexpr bool has_head_dim(int) { return true; }
  static constexpr const char* kHeadDimRule = "";
};

template <class ArchTag>
void launch_decode_mma8(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  launch_row_blocks<Mma8Kernel<ArchTag>>(p, head_dim, emulated, stream);
}

template <class ArchTag>
DecodeOccupancy decode_mma8_occupancy(int head_dim, const sm7x::CardLimits& card) {
  return row_blocks_occupancy<Mma8Kernel<ArchTag>>(head_dim, card);
}

template <class ArchTag>
void settle_decode_mma8_paddings(int head_dim, const sm7x::CardLimits& card) {
  settle_row_blocks_paddings<Mma8Kernel<ArchTag>>(head_dim, card);
}

}  // namespace flash_v100
