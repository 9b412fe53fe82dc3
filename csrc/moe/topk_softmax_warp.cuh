// One token's softmax top-k on one warp, shared by the routing kernel (moe_routing.cu) and the
// decode expert layer that routes from the router logits itself (awq_moe_decode.cu), so both pick
// the same experts with the same weights bit for bit. Lane l holds the logits of experts l, l + 32,
// ...; the softmax max and sum are warp reductions; each of the k picks is a warp arg-max (ties:
// lower expert index), after which the owner lane drops that expert. Lane j keeps the j-th pick, so
// the renormalised weights need no second pass. SIMT and arch-neutral (every arch >= 7.0).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <climits>
#include <type_traits>

#include "moe/moe_routing.h"

namespace sm7x {
namespace routing {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

struct Pick {
  float weight;  // softmax probability, renormalised over the k picks when asked
  int id;
};

// Lane j < k returns the token's j-th pick (most probable first); other lanes return an unused pick.
// experts <= 32 * kPerLane; called by all 32 lanes of the warp.
template <int kPerLane, typename T>
__device__ __forceinline__ Pick warp_topk_softmax(const T* logits, int experts, int k, bool renormalize) {
  const int lane = threadIdx.x % 32;
  float prob[kPerLane];
  float row_max = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < experts ? to_float(logits[e]) : -FLT_MAX;
    row_max = fmaxf(row_max, prob[i]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) row_max = fmaxf(row_max, __shfl_xor_sync(kFullMask, row_max, offset));
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (lane + 32 * i < experts) {
      prob[i] = expf(prob[i] - row_max);
      sum += prob[i];
    } else {
      prob[i] = -1.f;  // past the last expert: never picked (as a picked expert is marked)
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFullMask, sum, offset);
  const float inv_sum = 1.f / sum;

  Pick mine{0.f, 0};
  float chosen_sum = 0.f;
  for (int j = 0; j < k; ++j) {
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
    if (lane == j) mine = Pick{weight, best_expert};
  }
  if (renormalize) mine.weight /= chosen_sum;
  return mine;
}

// Calls launch(std::integral_constant<int, per_lane>{}, T{}) for the logits' dtype with the fewest
// logits per lane that hold `experts`: 8 (up to 256 experts, Qwen3.5/3.6 MoE) or 32 (up to
// kMaxRoutedExperts), so a 256-expert router does not scan 1024 slots per pick.
template <class Launch>
void with_router_shape(int experts, GatingDtype dtype, Launch&& launch) {
  static_assert(kMaxRoutedExperts == 32 * 32, "the widest form holds 32 logits per lane");
  auto for_dtype = [&](auto per_lane) {
    switch (dtype) {
      case GatingDtype::kFloat16: return launch(per_lane, __half{});
      case GatingDtype::kBFloat16: return launch(per_lane, __nv_bfloat16{});
      case GatingDtype::kFloat32: return launch(per_lane, float{});
    }
  };
  if (experts <= 256) return for_dtype(std::integral_constant<int, 8>{});
  return for_dtype(std::integral_constant<int, 32>{});
}

}  // namespace routing
}  // namespace sm7x
