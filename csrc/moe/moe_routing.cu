// SIMT routing steps (arch-neutral: the same code on every arch >= 7.0). Top-k softmax: one warp
// per token (topk_softmax_warp.cuh).
#include "core/cuda_check.h"
#include "moe/moe_routing.h"
#include "moe/topk_softmax_warp.cuh"

namespace sm7x {
namespace {

constexpr int kWarpsPerCta = 4;
using routing::kFullMask;

template <int kPerLane, typename T>
__global__ void __launch_bounds__(kWarpsPerCta * 32) topk_softmax_kernel(const TopkSoftmaxParams p) {
  const int token = blockIdx.x * kWarpsPerCta + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (token >= p.tokens) return;  // whole warps
  const T* logits = static_cast<const T*>(p.gating) + token * p.gating_stride;
  const routing::Pick pick = routing::warp_topk_softmax<kPerLane>(logits, p.experts, p.k, p.renormalize);
  if (lane < p.k) {
    const int64_t slot = (int64_t)token * p.k + lane;
    p.weights[slot] = pick.weight;
    p.ids[slot] = pick.id;
    if (p.token_expert != nullptr) p.token_expert[slot] = lane * p.tokens + token;
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
  routing::with_router_shape(p.experts, dtype, [&](auto per_lane, auto logit) {
    topk_softmax_kernel<decltype(per_lane)::value, decltype(logit)><<<grid, kWarpsPerCta * 32, 0, stream>>>(p);
  });
  SM7X_CHECK_LAUNCH();
}

}  // namespace sm7x
