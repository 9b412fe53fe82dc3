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

#include <algorithm>
#include <type_traits>

#include "core/cuda_check.h"
#include "moe/awq_moe_decode.h"
#include "quantization/awq/awq_gemm.h"
#include "quantization/awq/awq_warp.cuh"

namespace sm7x {
namespace {

using awq::kSlotK;
using awq::kSlots;
using awq::kTileK;
using awq::kTileRows;
using awq::word;

constexpr unsigned kFullMask = 0xffffffffu;

// How activations are read: through the read-only path, or from L2 only, where CTAs of the same launch
// wrote them (an SM's L1 is not kept coherent with other SMs' writes).
enum class ActLoad { kReadOnly, kL2Only };

// The 32 halves of x at k .. k+31 (one lane's segment) as floats.
template <ActLoad kLoad = ActLoad::kReadOnly>
__device__ __forceinline__ void load_segment(const __half* x, float (&xf)[kSlotK]) {
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    const uint4* source = reinterpret_cast<const uint4*>(x) + v;
    const uint4 chunk = kLoad == ActLoad::kReadOnly ? __ldg(source) : __ldcg(source);
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

// act[row, 16 columns from tile * 16] = silu(gate) * up of x[row / k] through the row's expert (nothing
// for another rank's expert: the combine skips the row). sums: the CTA's kWarps x 2 x 16 floats.
template <int kWarps>
__device__ __forceinline__ void gate_up_tile(const AwqMoeDecodeParams& p, int row, int tile,
                                             float (&sums)[kWarps][2][kTileRows]) {
  const int expert = p.ids[row];
  if (expert < 0 || expert >= p.experts) return;
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

// Grid (routed rows, inter / 16): gate_up_tile for each.
template <int kWarps>
__global__ void __launch_bounds__(kWarps * 32) gate_up_kernel(const AwqMoeDecodeParams p) {
  __shared__ float sums[kWarps][2][kTileRows];  // [warp][gate, up][column]
  gate_up_tile<kWarps>(p, blockIdx.x, blockIdx.y, sums);
}

// out[token, 16 columns from tile * 16] = sum over the token's slots of weight * act[slot] through the
// slot's expert's down projection. Act: how act is read (kL2Only where other CTAs of the same launch
// wrote it). sums: the CTA's kWarps x 16 floats.
template <int kWarps, ActLoad kAct>
__device__ __forceinline__ void down_combine_tile(const AwqMoeDecodeParams& p, int token, int tile,
                                                  float (&sums)[kWarps][kTileRows]) {
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
    load_segment<kAct>(p.act + (size_t)row * p.inter + k, xf);
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

// Grid (tokens, hidden / 16): down_combine_tile for each.
template <int kWarps>
__global__ void __launch_bounds__(kWarps * 32) down_combine_kernel(const AwqMoeDecodeParams p) {
  __shared__ float sums[kWarps][kTileRows];
  down_combine_tile<kWarps, ActLoad::kReadOnly>(p, blockIdx.x, blockIdx.y, sums);
}

// Both steps in one launch (experimental, awq_moe_decode.h): a CTA takes the next work item from
// counters[0] as it starts, gate/up tiles first, so a down tile's CTA, which waits until its token's
// gate/up tiles are all counted in counters[2 + token], only waits on CTAs already running (no
// deadlock, whatever the GPU schedules). The last CTA to finish (counters[1]) zeroes the counters for
// the next launch, so a CUDA graph replays it as captured.
template <int kWarps>
__global__ void __launch_bounds__(kWarps * 32) one_launch_kernel(const AwqMoeDecodeParams p, int* counters) {
  __shared__ float gate_up_sums[kWarps][2][kTileRows];
  __shared__ float down_sums[kWarps][kTileRows];
  __shared__ int item_s;
  const int inter_tiles = p.inter / kTileRows, hidden_tiles = p.hidden / kTileRows;
  const int gate_up_items = p.tokens * p.k * inter_tiles, items = gate_up_items + p.tokens * hidden_tiles;
  if (threadIdx.x == 0) item_s = atomicAdd(&counters[0], 1);
  __syncthreads();
  const int item = item_s;
  if (item >= items) __trap();  // counters not zero at launch (shared by another launch in flight?)
  if (item < gate_up_items) {
    const int row = item / inter_tiles;
    gate_up_tile<kWarps>(p, row, item % inter_tiles, gate_up_sums);
    __syncthreads();  // this tile's act values written (threads 0-15) ...
    if (threadIdx.x == 0) {
      __threadfence();  // ... and, cumulatively, visible to every SM before the count says so
      atomicAdd(&counters[2 + row / p.k], 1);
    }
  } else {
    const int token = (item - gate_up_items) / hidden_tiles;
    if (threadIdx.x == 0) {
      volatile int* done = &counters[2 + token];
      while (*done < p.k * inter_tiles) __nanosleep(100);
      __threadfence();
    }
    __syncthreads();
    down_combine_tile<kWarps, ActLoad::kL2Only>(p, token, (item - gate_up_items) % hidden_tiles, down_sums);
  }
  if (threadIdx.x == 0) {
    __threadfence();  // this CTA's own count lands before it says it is finished
    if (atomicAdd(&counters[1], 1) == items - 1) {
      __threadfence();  // every count has landed: zero them for the next launch
      for (int i = 0; i < 2 + p.tokens; ++i) counters[i] = 0;
    }
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

void launch_awq_moe_decode(const AwqMoeDecodeParams& p, int* one_launch_counters, cudaStream_t stream) {
  if (p.tokens == 0) return;
  const int hidden_tiles = (p.hidden + kTileK - 1) / kTileK, inter_tiles = (p.inter + kTileK - 1) / kTileK;
  if (one_launch_counters != nullptr) {  // gate/up's warp limit (8) holds for both steps
    const int items = p.tokens * (p.inter / kTileRows * p.k + p.hidden / kTileRows);  // the op bounds it
    with_warps_for<8>(std::max(hidden_tiles, p.k * inter_tiles), [&](auto warps) {
      one_launch_kernel<decltype(warps)::value><<<items, warps * 32, 0, stream>>>(p, one_launch_counters);
      SM7X_CHECK_LAUNCH();
    });
    return;
  }
  with_warps_for<8>(hidden_tiles, [&](auto warps) {
    gate_up_kernel<decltype(warps)::value><<<dim3(p.tokens * p.k, p.inter / kTileRows), warps * 32, 0, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  });
  with_warps_for<16>(p.k * inter_tiles, [&](auto warps) {
    down_combine_kernel<decltype(warps)::value><<<dim3(p.tokens, p.hidden / kTileRows), warps * 32, 0, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  });
}

}  // namespace sm7x
