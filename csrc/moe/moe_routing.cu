// SIMT top-k softmax routing (arch-neutral: the same code on every arch >= 7.0). One warp per token:
// lane l holds the logits of experts l, l + 32, ...; the softmax max and sum are warp reductions;
// each of the k picks is a warp arg-max (ties: lower expert index), after which the owner lane
// drops that expert. Lane j keeps the j-th pick, so the renormalised weights need no second pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <climits>

#include "core/cuda_check.h"
#include "moe/moe_routing.h"

namespace sm7x {
namespace {

constexpr int kWarpsPerCta = 4;
constexpr int kPerLane = kMaxRoutedExperts / 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <typename T>
__global__ void __launch_bounds__(kWarpsPerCta * 32) topk_softmax_kernel(const TopkSoftmaxParams p) {
  const int token = blockIdx.x * kWarpsPerCta + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (token >= p.tokens) return;  // whole warps
  const T* logits = static_cast<const T*>(p.gating) + token * p.gating_stride;
  float prob[kPerLane];
  float row_max = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < p.experts ? to_float(logits[e]) : -FLT_MAX;
    row_max = fmaxf(row_max, prob[i]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) row_max = fmaxf(row_max, __shfl_xor_sync(kFullMask, row_max, offset));
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (lane + 32 * i < p.experts) {
      prob[i] = expf(prob[i] - row_max);
      sum += prob[i];
    } else {
      prob[i] = -1.f;  // past the last expert: never picked (as a picked expert is marked)
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFullMask, sum, offset);
  const float inv_sum = 1.f / sum;

  float my_weight = 0.f, chosen_sum = 0.f;
  int my_id = 0;
  for (int j = 0; j < p.k; ++j) {
    // This lane's best remaining expert (chosen ones hold -1), then the warp's.
    float best = -1.f;
    int best_expert = INT_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (prob[i] > best) best = prob[i], best_expert = lane + 32 * i;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(kFullMask, best, offset);
      const int other_expert = __shfl_xor_sync(kFullMask, best_expert, offset);
      if (other > best || (other == best && other_expert < best_expert)) best = other, best_expert = other_expert;
    }
    if (best_expert == INT_MAX) best = 0.f, best_expert = 0;  // NaN logits: a valid expert of weight 0
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + 32 * i == best_expert) prob[i] = -1.f;
    }
    const float weight = best * inv_sum;
    chosen_sum += weight;
    if (lane == j) my_weight = weight, my_id = best_expert;
  }
  if (lane < p.k) {
    const int64_t slot = (int64_t)token * p.k + lane;
    p.weights[slot] = p.renormalize ? my_weight / chosen_sum : my_weight;
    p.ids[slot] = my_id;
    p.token_expert[slot] = lane * p.tokens + token;
  }
}

// One CTA: count rows per expert (shared atomics), scan the counts into offsets and tile positions,
// write each expert's tiles, then place each row at its expert's cursor. A single CTA keeps the scan simple; at prefill sizes
// (16K tokens x top-8) it is ~128 shared atomics per thread.
constexpr int kSortThreads = 1024;

// Exclusive prefix sum of `value` over the CTA's kSortThreads threads, in thread order.
__device__ long long cta_exclusive_scan(long long value) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  long long inclusive = value;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const long long other = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  __shared__ long long warp_sums[kSortThreads / 32];
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  long long before = 0;
  for (int w = 0; w < warp; ++w) before += warp_sums[w];
  return before + inclusive - value;
}

__global__ void __launch_bounds__(kSortThreads) sort_rows_kernel(const SortRowsParams p) {
  __shared__ int count[kMaxRoutedExperts], cursor[kMaxRoutedExperts];
  __shared__ int placed_total;
  const int e = threadIdx.x;  // thread e owns expert e
  if (e < p.experts) count[e] = 0;
  __syncthreads();
  for (int r = threadIdx.x; r < p.rows; r += kSortThreads) {
    const int expert = p.topk_ids[r];
    if (expert >= 0 && expert < p.experts) atomicAdd(&count[expert], 1);
  }
  __syncthreads();
  // Exclusive scans (over expert = thread) of the row counts and of the tile counts, packed as
  // (rows << 21) | tiles: both are at most the op's 2^20 rows.
  const int mine = e < p.experts ? count[e] : 0;
  const int tiles = (mine + p.rows_per_tile - 1) / p.rows_per_tile;
  const long long exclusive = cta_exclusive_scan(((long long)mine << 21) | tiles);
  const int row_offset = static_cast<int>(exclusive >> 21), first_tile = static_cast<int>(exclusive & 0x1fffff);
  if (e < p.experts) {
    p.offsets[e] = row_offset;
    cursor[e] = row_offset;
  }
  if (e == p.experts - 1) {
    p.offsets[p.experts] = row_offset + mine;
    placed_total = row_offset + mine;
  }
  for (int t = threadIdx.x; t < p.max_tiles; t += kSortThreads) p.tile_expert[t] = -1;
  __syncthreads();  // every -1 is written before the tiles
  for (int t = 0; t < tiles; ++t) {
    p.tile_expert[first_tile + t] = e;
    p.tile_row[first_tile + t] = row_offset + t * p.rows_per_tile;
  }
  for (int r = threadIdx.x; r < p.rows; r += kSortThreads) {
    const int expert = p.topk_ids[r];
    if (expert >= 0 && expert < p.experts) p.sorted_rows[atomicAdd(&cursor[expert], 1)] = r;
  }
  for (int r = placed_total + threadIdx.x; r < p.rows; r += kSortThreads) p.sorted_rows[r] = -1;
}

// Elementwise steps: one thread per 8 halves (one 16-byte load per row read), a CTA row per token/row.
constexpr int kVectorThreads = 128;

__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 pair = __half22float2(h[i]);
    f[2 * i] = pair.x, f[2 * i + 1] = pair.y;
  }
}

__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  uint4 v;
  __half2* h = reinterpret_cast<__half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

__global__ void __launch_bounds__(kVectorThreads) combine_kernel(const CombineParams p) {
  const int token = blockIdx.x, column = (blockIdx.y * kVectorThreads + threadIdx.x) * 8;
  if (column >= p.hidden) return;
  float sum[8] = {};
  for (int j = 0; j < p.k; ++j) {
    const size_t row = (size_t)token * p.k + j;
    const int expert = p.ids[row];
    if (expert < 0 || expert >= p.experts) continue;  // another rank's expert: its row was not written
    const float weight = p.weights[row];
    float v[8];
    unpack8(*reinterpret_cast<const uint4*>(p.down + row * p.hidden + column), v);
#pragma unroll
    for (int i = 0; i < 8; ++i) sum[i] += weight * v[i];
  }
  *reinterpret_cast<uint4*>(p.out + (size_t)token * p.hidden + column) = pack8(sum);
}

__global__ void __launch_bounds__(kVectorThreads) silu_mul_kernel(const SiluMulParams p) {
  const int row = blockIdx.x, column = (blockIdx.y * kVectorThreads + threadIdx.x) * 8;
  if (column >= p.width) return;
  const __half* gate = p.gate_up + (size_t)row * 2 * p.width + column;
  float g[8], u[8];
  unpack8(*reinterpret_cast<const uint4*>(gate), g);
  unpack8(*reinterpret_cast<const uint4*>(gate + p.width), u);
#pragma unroll
  for (int i = 0; i < 8; ++i) g[i] = g[i] / (1.f + expf(-g[i])) * u[i];
  *reinterpret_cast<uint4*>(p.out + (size_t)row * p.width + column) = pack8(g);
}

}  // namespace

void launch_sort_rows(const SortRowsParams& p, cudaStream_t stream) {
  sort_rows_kernel<<<1, kSortThreads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

void launch_combine(const CombineParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return;
  const dim3 grid(p.tokens, (p.hidden / 8 + kVectorThreads - 1) / kVectorThreads);
  combine_kernel<<<grid, kVectorThreads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

void launch_silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  const dim3 grid(p.rows, (p.width / 8 + kVectorThreads - 1) / kVectorThreads);
  silu_mul_kernel<<<grid, kVectorThreads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

void launch_topk_softmax(const TopkSoftmaxParams& p, GatingDtype dtype, cudaStream_t stream) {
  if (p.tokens == 0) return;
  const dim3 grid((p.tokens + kWarpsPerCta - 1) / kWarpsPerCta);
  switch (dtype) {
    case GatingDtype::kFloat16: topk_softmax_kernel<__half><<<grid, kWarpsPerCta * 32, 0, stream>>>(p); break;
    case GatingDtype::kBFloat16:
      topk_softmax_kernel<__nv_bfloat16><<<grid, kWarpsPerCta * 32, 0, stream>>>(p);
      break;
    case GatingDtype::kFloat32: topk_softmax_kernel<float><<<grid, kWarpsPerCta * 32, 0, stream>>>(p); break;
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x
