// One token's softmax top-k on one warp, shared by the routing kernel (moe_routing.cu) and the
// decode expert layer that routes from the router logits itself (awq_moe_decode.cu), so both pick
// the same experts with the same weights bit for bit. SIMT and arch-neutral (every arch >= 7.0).
//
// Experts are ranked by a key (RankKey): the logit's bits made orderable as an unsigned integer (NaN
// below every number), then the inverted expert index, so keys are distinct, the larger logit ranks
// first (softmax is monotonic) and equal logits go lower expert first. Lane l holds experts l, l + 32,
// ... Two selections of the same keys:
//  - up to 256 experts and top-8 (Qwen3.5/3.6 MoE): each lane sorts its 8 keys, then five butterfly
//    steps merge the lists of lane pairs, keeping the top 8 (bitonic merges: no dependent chain of k
//    warp arg-maxes), after which every lane holds the token's top 8 in order;
//  - otherwise k warp arg-max rounds, the owner lane dropping each pick.
// The weights are exp(logit - top logit) over the sum of the k picks' terms (renormalised) or of all
// experts' terms, summed in the same order by both selections.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "moe/moe_routing.h"

namespace sm7x {
namespace routing {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kSortedTopK = 8;  // the butterfly selection's list length: top-k up to this

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

// A logit's rank key: its bits made orderable as an unsigned integer (NaN below every number, -0 as
// +0), then the inverted expert index. 16-bit logits (the fp16 router of an fp16 model) fit a 32-bit key, whose
// compare-and-swap is one min and one max; float32 logits take 64 bits.
template <typename T>
struct RankKey {  // __half, __nv_bfloat16
  using type = unsigned;
  __device__ static type of(T logit, int expert) {
    const unsigned bits = raw_bits(logit) == 0x8000u ? 0u : raw_bits(logit);  // -0 ranks as +0
    const unsigned ordered = (bits & 0x8000u) ? (~bits & 0xffffu) : (bits | 0x8000u);
    return ((to_float(logit) != to_float(logit) ? 0u : ordered) << 16) | (0xffffu - expert);
  }
  __device__ static int expert(type key) { return 0xffff - static_cast<int>(key & 0xffffu); }
  __device__ static float logit(type key) {
    const unsigned ordered = key >> 16;
    const unsigned short bits = (ordered & 0x8000u) ? (ordered & 0x7fffu) : (~ordered & 0xffffu);
    return from_bits(bits, T{});
  }

 private:
  __device__ static unsigned raw_bits(__half x) { return __half_as_ushort(x); }
  __device__ static unsigned raw_bits(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
  __device__ static float from_bits(unsigned short bits, __half) { return __half2float(__ushort_as_half(bits)); }
  __device__ static float from_bits(unsigned short bits, __nv_bfloat16) {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  }
};

template <>
struct RankKey<float> {
  using type = unsigned long long;
  __device__ static type of(float logit, int expert) {
    unsigned bits = logit == 0.f ? 0u : __float_as_uint(logit);  // -0 ranks as +0
    bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    if (logit != logit) bits = 0;
    return (static_cast<type>(bits) << 32) | static_cast<unsigned>(~expert);
  }
  __device__ static int expert(type key) { return static_cast<int>(~static_cast<unsigned>(key)); }
  __device__ static float logit(type key) {
    const unsigned bits = static_cast<unsigned>(key >> 32);
    return __uint_as_float((bits & 0x80000000u) ? (bits & 0x7fffffffu) : ~bits);
  }
};

template <typename Key>
__device__ __forceinline__ Key max_key(Key a, Key b) { return a > b ? a : b; }
template <typename Key>
__device__ __forceinline__ Key min_key(Key a, Key b) { return a > b ? b : a; }

// Bitonic stages from `stride` down to 1 over a[L], each pair ordered descending where `descending`.
template <int L, typename Key>
__device__ __forceinline__ void bitonic_stages(Key (&a)[L], int size, int stride) {
#pragma unroll
  for (; stride > 0; stride /= 2) {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int j = i ^ stride;
      if (j > i) {
        const bool descending = (i & size) == 0;
        const Key hi = max_key(a[i], a[j]), lo = min_key(a[i], a[j]);
        a[i] = descending ? hi : lo, a[j] = descending ? lo : hi;
      }
    }
  }
}

// The warp's top-L keys, in descending order, in every lane (lane l starts with keys[i] of expert
// l + 32 i).
template <int L, typename Key>
__device__ __forceinline__ void warp_sorted_top(Key (&keys)[L]) {
#pragma unroll
  for (int size = 2; size <= L; size *= 2) bitonic_stages(keys, size, size / 2);
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    // The partner's descending list reversed against ours: the larger of each pair is a bitonic
    // sequence holding the top L of both lists; one bitonic merge sorts it.
    Key theirs[L];
#pragma unroll
    for (int i = 0; i < L; ++i) theirs[i] = __shfl_xor_sync(kFullMask, keys[i], offset);
#pragma unroll
    for (int i = 0; i < L; ++i) keys[i] = max_key(keys[i], theirs[L - 1 - i]);
    bitonic_stages(keys, 2 * L, L / 2);  // size 2L: every pair descending
  }
}

// Sum over the warp of every lane's v.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

struct Pick {
  float weight;  // softmax probability, renormalised over the k picks when asked
  int id;
};

// What the selections leave each lane: its pick's key (lane j < k: the j-th), the top logit, and the
// sum of exp(logit - top) over the picks in pick order.
template <typename Key>
struct Selection {
  Key mine = 0;
  float top = 0.f, picked_sum = 0.f;
};

template <typename T, int kPerLane, typename Key = typename RankKey<T>::type>
__device__ __forceinline__ Selection<Key> select_by_rounds(Key (&keys)[kPerLane], int k, int lane) {
  Selection<Key> s;
  for (int j = 0; j < k; ++j) {
    Key best = 0;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) best = max_key(best, keys[i]);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) best = max_key(best, __shfl_xor_sync(kFullMask, best, offset));
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) keys[i] = keys[i] == best ? 0 : keys[i];  // valid keys are never 0
    if (j == 0) s.top = RankKey<T>::logit(best);
    s.picked_sum += expf(RankKey<T>::logit(best) - s.top);
    if (lane == j) s.mine = best;
  }
  return s;
}

template <typename T, typename Key = typename RankKey<T>::type>
__device__ __forceinline__ Selection<Key> select_sorted(Key (&keys)[kSortedTopK], int k, int lane) {
  warp_sorted_top(keys);
  Selection<Key> s;
  s.top = RankKey<T>::logit(keys[0]);
#pragma unroll
  for (int j = 0; j < kSortedTopK; ++j) {
    if (j < k) s.picked_sum += expf(RankKey<T>::logit(keys[j]) - s.top);
    if (lane == j) s.mine = keys[j];
  }
  return s;
}

// Lane j < k returns the token's j-th pick (largest logit first); other lanes return an unused pick.
// experts <= 32 * kPerLane; called by all 32 lanes of the warp.
template <int kPerLane, typename T>
__device__ __forceinline__ Pick warp_topk_softmax(const T* logits, int experts, int k, bool renormalize) {
  using Key = typename RankKey<T>::type;
  const int lane = threadIdx.x % 32;
  float logit[kPerLane];
  Key keys[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    const T raw = e < experts ? logits[e] : T{};
    logit[i] = to_float(raw);
    keys[i] = e < experts ? RankKey<T>::of(raw, e) : 0;  // past the last expert: below every expert
  }
  Selection<Key> s;
  if constexpr (kPerLane == kSortedTopK) {
    s = k <= kSortedTopK ? select_sorted<T>(keys, k, lane) : select_by_rounds<T>(keys, k, lane);
  } else {
    s = select_by_rounds<T>(keys, k, lane);
  }
  float denominator = s.picked_sum;
  if (!renormalize) {
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + 32 * i < experts) sum += expf(logit[i] - s.top);
    }
    denominator = warp_sum(sum);
  }
  return Pick{expf(RankKey<T>::logit(s.mine) - s.top) / denominator, RankKey<T>::expert(s.mine)};
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
  if (experts <= 32 * kSortedTopK) return for_dtype(std::integral_constant<int, kSortedTopK>{});
  return for_dtype(std::integral_constant<int, 32>{});
}

}  // namespace routing
}  // namespace sm7x
