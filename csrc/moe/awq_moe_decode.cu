// Decode-size AWQ expert layer (awq_moe_decode.h): two SIMT kernels over the packed tiles.
// Lane s of a warp reads slot s of a tile half: column 8h + s/4 of the tile, k segment s%4 (32 k);
// the four lanes of a column meet with two shuffles, the warps of a CTA in shared memory. Warps take
// k tiles (and, for the down projection, the token's experts) round-robin, so a CTA streams its
// columns' tiles once, with evict-first loads: each weight byte is used once per routed row.
// A CTA has as many warps as give each at most two of those items (4 to 16, see with_warps_for): a
// warp's items are a serial chain of loads and dequantising dot products, and with 4 warps a
// 35B-A3B decode step ran 0.12-0.32 waves at 6-11% occupancy, 56-61% of stalls waiting on memory
// (ncu, H200, 2026-11-30).
#include <cuda_fp16.h>

#include <type_traits>

#include "core/cuda_check.h"
#include "core/resident_ctas.h"
#include "moe/awq_moe_decode.h"
#include "moe/topk_softmax_warp.cuh"
#include "quantization/awq/awq_gemm.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x {
namespace {

using awq::kSlotK;
using awq::kSlots;
using awq::kTileK;
using awq::kTileRows;

using routing::kFullMask;

// The 32 halves of x at k .. k+31 (one lane's segment) as floats.
__device__ __forceinline__ void load_segment(const __half* x, float (&xf)[kSlotK]) {
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    const uint4 chunk = __ldg(reinterpret_cast<const uint4*>(x) + v);
    const __half2* halves = reinterpret_cast<const __half2*>(&chunk);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 pair = __half22float2(halves[j]);
      xf[8 * v + 2 * j] = pair.x, xf[8 * v + 2 * j + 1] = pair.y;
    }
  }
}

// One slot (32 k of one column) dotted with the segment's x: dequantised as the GEMM kernels do
// (q * scale + bias in one fp16 FMA), summed in fp32.
__device__ __forceinline__ float dot_slot(const uint4& w, __half2 scale_zero, const float (&xf)[kSlotK]) {
  float sum = 0.f;
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    __half2 deq[4];
    dequant_int4x8(word(w, v), scale_zero, deq);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 pair = __half22float2(deq[j]);
      sum = fmaf(pair.x, xf[8 * v + 2 * j], fmaf(pair.y, xf[8 * v + 2 * j + 1], sum));
    }
  }
  return sum;
}

// Slot `lane` of half h of packed tile (n_tile, k_tile) in a weight with k_tiles tiles along k.
__device__ __forceinline__ uint4 load_slot(const uint4* w, int n_tile, int k_tiles, int k_tile, int h, int lane) {
  return __ldcs(w + ((size_t)(n_tile * k_tiles + k_tile) * 2 + h) * kSlots + lane);
}

// Sums of a column's four k segments (lanes 4i .. 4i+3) into every one of them.
__device__ __forceinline__ float column_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// Where launch 1 finds a routed row's expert: the given ids, or the token's router logits.
struct GivenRouting {
  __device__ static int expert_of(const AwqMoeDecodeParams& p, int row) { return p.ids[row]; }
};

// Warp 0 routes the token and hands the row's expert to the other warps through shared memory (routing
// in every warp cost each SM a warp's routing instructions per warp); lane `slot` of warp 0 in the
// CTAs of column tile 0 writes the row's pick for launch 2.
template <int kPerLane, typename Logit>
struct LogitRouting {
  __device__ static int expert_of(const AwqMoeDecodeParams& p, int row) {
    __shared__ int expert;
    if (threadIdx.x < 32) {
      const int token = row / p.k, slot = row % p.k;
      const Logit* logits = static_cast<const Logit*>(p.router_logits) + token * p.logits_stride;
      const routing::Pick pick = routing::warp_topk_softmax<kPerLane>(logits, p.experts, p.k, p.renormalize);
      if (threadIdx.x == slot) {
        expert = pick.id;
        if (blockIdx.y == 0) p.ids[row] = pick.id, p.weights[row] = pick.weight;
      }
    }
    __syncthreads();
    return expert;
  }
};

// Grid (routed rows, inter / 16): act[row, 16 columns] = silu(gate) * up of x[row / k] through the
// row's expert.
template <int kWarps, class Routing>
__global__ void __launch_bounds__(kWarps * 32) gate_up_kernel(const AwqMoeDecodeParams p) {
  __shared__ float sums[kWarps][2][kTileRows];  // [warp][gate, up][column]
  const int row = blockIdx.x, tile = blockIdx.y;
  const int expert = Routing::expert_of(p, row);
  if (expert < 0 || expert >= p.experts) return;  // another rank's expert: the combine skips the row
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, segment = lane % 4;
  const int k_tiles = (p.hidden + kTileK - 1) / kTileK, columns = 2 * p.inter;
  const int up_tile = tile + p.inter / kTileRows;
  const uint4* w = p.w13 + expert * p.w13_stride;
  const __half2* scale_zero = p.w13_sz + expert * p.w13_sz_stride;
  const __half* x = p.x + (size_t)(row / p.k) * p.hidden;
  float gate[2] = {}, up[2] = {};
#pragma unroll 4  // independent iterations: their loads can be in flight together
  for (int k_tile = warp; k_tile < k_tiles; k_tile += kWarps) {
    const int k = k_tile * kTileK + segment * kSlotK;
    if (k >= p.hidden) continue;  // hidden is a multiple of 32: a segment is all in or all out
    float xf[kSlotK];
    load_segment(x + k, xf);
    const __half2* group_row = scale_zero + (size_t)(k >> p.group_shift) * columns;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = tile * kTileRows + 8 * h + lane / 4;
      gate[h] += dot_slot(load_slot(w, tile, k_tiles, k_tile, h, lane), group_row[n], xf);
      up[h] += dot_slot(load_slot(w, up_tile, k_tiles, k_tile, h, lane), group_row[p.inter + n], xf);
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    gate[h] = column_sum(gate[h]);
    up[h] = column_sum(up[h]);
    if (segment == 0) {
      sums[warp][0][8 * h + lane / 4] = gate[h];
      sums[warp][1][8 * h + lane / 4] = up[h];
    }
  }
  __syncthreads();
  if (threadIdx.x < kTileRows) {
    float g = 0.f, u = 0.f;
#pragma unroll
    for (int i = 0; i < kWarps; ++i) g += sums[i][0][threadIdx.x], u += sums[i][1][threadIdx.x];
    p.act[(size_t)row * p.inter + tile * kTileRows + threadIdx.x] = __float2half_rn(g / (1.f + expf(-g)) * u);
  }
}

// Grid (tokens, hidden / 16): out[token, 16 columns] = sum over the token's slots of weight * act[slot]
// through the slot's expert's down projection.
template <int kWarps>
__global__ void __launch_bounds__(kWarps * 32) down_combine_kernel(const AwqMoeDecodeParams p) {
  __shared__ float sums[kWarps][kTileRows];
  const int token = blockIdx.x, tile = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, segment = lane % 4;
  const int k_tiles = (p.inter + kTileK - 1) / kTileK;
  float acc[2] = {};
#pragma unroll 2
  for (int item = warp; item < p.k * k_tiles; item += kWarps) {
    const int slot = item / k_tiles, k_tile = item % k_tiles;
    const int row = token * p.k + slot;
    const int expert = p.ids[row];
    const int k = k_tile * kTileK + segment * kSlotK;
    if (expert < 0 || expert >= p.experts || k >= p.inter) continue;
    float xf[kSlotK];
    load_segment(p.act + (size_t)row * p.inter + k, xf);
    const uint4* w = p.w2 + expert * p.w2_stride;
    const __half2* group_row = p.w2_sz + expert * p.w2_sz_stride + (size_t)(k >> p.group_shift) * p.hidden;
    const float weight = p.weights[row];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = tile * kTileRows + 8 * h + lane / 4;
      acc[h] = fmaf(weight, dot_slot(load_slot(w, tile, k_tiles, k_tile, h, lane), group_row[n], xf), acc[h]);
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    acc[h] = column_sum(acc[h]);
    if (segment == 0) sums[warp][8 * h + lane / 4] = acc[h];
  }
  __syncthreads();
  if (threadIdx.x < kTileRows) {
    float v = 0.f;
#pragma unroll
    for (int i = 0; i < kWarps; ++i) v += sums[i][threadIdx.x];
    p.out[(size_t)token * p.hidden + tile * kTileRows + threadIdx.x] = __float2half_rn(v);
  }
}

// Calls launch(std::integral_constant<int, warps>) with the fewest warps (4, 8, then up to kMaxWarps)
// that give each at most two of a CTA's `items`. gate_up stops at 8: at 16 its 92 registers a thread
// (sm_75) leave one CTA per SM, fewer warps resident than three CTAs of 8.
template <int kMaxWarps, class Launch>
void with_warps_for(int items, Launch&& launch) {
  if (items <= 8) return launch(std::integral_constant<int, 4>{});
  if (kMaxWarps == 8 || items <= 16) return launch(std::integral_constant<int, 8>{});
  return launch(std::integral_constant<int, kMaxWarps>{});
}

}  // namespace

void launch_awq_moe_decode(const AwqMoeDecodeParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return;
  const int hidden_tiles = (p.hidden + kTileK - 1) / kTileK, inter_tiles = (p.inter + kTileK - 1) / kTileK;
  with_warps_for<8>(hidden_tiles, [&](auto warps) {
    constexpr int kWarps = decltype(warps)::value;
    const dim3 grid(p.tokens * p.k, p.inter / kTileRows);
    if (p.router_logits == nullptr) {
      gate_up_kernel<kWarps, GivenRouting><<<grid, kWarps * 32, 0, stream>>>(p);
    } else {
      routing::with_router_shape(p.experts, p.logits_dtype, [&](auto per_lane, auto logit) {
        constexpr auto kRouting = gate_up_kernel<kWarps, LogitRouting<decltype(per_lane)::value, decltype(logit)>>;
        // Each CTA's routing delays its weight loads by about a routing kernel's latency: worth it in
        // one wave, where it replaces a launch, but paid again by every later wave (H200, 2026-12-04:
        // 0.92-0.98x the routing kernel's time in one wave, 1.06-1.19x in two to four).
        if (fits_one_wave<kRouting, kWarps * 32>(static_cast<long long>(grid.x) * grid.y)) {
          kRouting<<<grid, kWarps * 32, 0, stream>>>(p);
        } else {
          launch_topk_softmax(TopkSoftmaxParams{p.router_logits, p.logits_stride, p.weights, p.ids, nullptr, p.tokens,
                                                p.experts, p.k, p.renormalize},
                              p.logits_dtype, stream);
          gate_up_kernel<kWarps, GivenRouting><<<grid, kWarps * 32, 0, stream>>>(p);
        }
      });
    }
    SM7X_CHECK_LAUNCH();
  });
  with_warps_for<16>(p.k * inter_tiles, [&](auto warps) {
    down_combine_kernel<decltype(warps)::value><<<dim3(p.tokens, p.hidden / kTileRows), warps * 32, 0, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  });
}

}  // namespace sm7x
