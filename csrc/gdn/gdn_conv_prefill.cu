// Causal conv1d prefill kernels; see gdn_conv_prefill.h for the layouts and the rule.
#include "core/cuda_check.h"
#include "gdn/gdn_conv_prefill.h"

namespace sm7x {
namespace {

constexpr int kMaxWidth = 8;
constexpr int kChannelThreads = 64;   // threads along dim per CTA (x rows are dim-contiguous: coalesced)
constexpr int kTokenThreads = 4;      // threads along tokens per CTA
constexpr int kTokensPerThread = 16;  // consecutive tokens per thread: one window slides along them
constexpr int kTokensPerCta = kTokenThreads * kTokensPerThread;

__device__ __forceinline__ float silu(float x) { return x / (1.f + __expf(-x)); }

// The sequence holding token t: the last n with query_start_loc[n] <= t (binary search; seqs is small).
__device__ __forceinline__ int sequence_of(const int* query_start_loc, int seqs, int t) {
  int lo = 0, hi = seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_start_loc[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ int block_of(const GdnConvPrefillParams& p, int n) {
  return p.cache_indices ? p.cache_indices[n * p.indices_stride] : n;
}

// vLLM's padding sequences; without cache indices every sequence is live (sequence n uses block n, and
// block 0 would otherwise read as the null block).
__device__ __forceinline__ bool is_padding(const GdnConvPrefillParams& p, int block) {
  return p.cache_indices && (block == p.pad_slot_id || block == p.null_block_id);
}

// kLanes consecutive channels from d of x (or out) at token t: one 4-byte access for two (the launch
// takes two only where dim strides are 1 and rows 4-byte aligned).
template <int kLanes>
__device__ __forceinline__ void load_x(const GdnConvPrefillParams& p, int d, int t, float (&v)[kLanes]) {
  const __half* x = p.x + d * p.x_dim_stride + (int64_t)t * p.x_token_stride;
  if constexpr (kLanes == 2) {
    const float2 pair = __half22float2(*reinterpret_cast<const __half2*>(x));
    v[0] = pair.x, v[1] = pair.y;
  } else {
    v[0] = __half2float(*x);
  }
}

template <int kLanes>
__device__ __forceinline__ void store_out(const GdnConvPrefillParams& p, int d, int t, const float (&v)[kLanes]) {
  __half* out = p.out + d * p.out_dim_stride + (int64_t)t * p.out_token_stride;
  if constexpr (kLanes == 2) {
    *reinterpret_cast<__half2*>(out) = __floats2half2_rn(v[0], v[1]);
  } else {
    *out = __float2half_rn(v[0]);
  }
}

// Input at position pos of sequence n (begin: its first token): x where pos >= 0, else the initial
// state's column width - 1 + pos (zero without one).
template <int kLanes>
__device__ __forceinline__ void input_at(const GdnConvPrefillParams& p, int d, int begin, int pos, const __half* state,
                                         float (&v)[kLanes]) {
  if (pos >= 0) return load_x<kLanes>(p, d, begin + pos, v);
#pragma unroll
  for (int l = 0; l < kLanes; ++l) {
    v[l] = state ? __half2float(state[(p.width - 1 + pos) * p.state_pos_stride + l * p.state_dim_stride]) : 0.f;
  }
}

// Grid (ceil(tokens / kTokensPerCta), ceil(dim / (kChannelThreads * kLanes))); thread (kLanes channels, 16
// consecutive tokens). Within a sequence the thread keeps the last width - 1 inputs in registers and
// slides them along, so each input is read once per thread; a range that crosses into the next sequence
// starts a new window there.
template <int kLanes>
__global__ void __launch_bounds__(kChannelThreads * kTokenThreads) conv_prefill_kernel(const GdnConvPrefillParams p) {
  const int d = (blockIdx.y * kChannelThreads + threadIdx.x % kChannelThreads) * kLanes;
  if (d >= p.dim) return;  // dim is a multiple of kLanes (the launch's rule)
  // Tokens before the first sequence's start belong to no sequence (vLLM's offsets start at 0).
  const int first = max(blockIdx.x * kTokensPerCta + threadIdx.x / kChannelThreads * kTokensPerThread,
                        p.query_start_loc[0]);
  const int end = min(blockIdx.x * kTokensPerCta + (threadIdx.x / kChannelThreads + 1) * kTokensPerThread,
                      min(p.tokens, p.query_start_loc[p.seqs]));  // no padding tokens
  if (first >= end) return;
  const int width = p.width;
  // The window's taps and the new input's (width - 1), apart: a run-time index would put the array in
  // local memory.
  float w[kMaxWidth - 1][kLanes], w_input[kLanes], bias[kLanes];
#pragma unroll
  for (int l = 0; l < kLanes; ++l) {
#pragma unroll
    for (int j = 0; j < kMaxWidth - 1; ++j) w[j][l] = j < width - 1 ? __half2float(p.weight[(d + l) * width + j]) : 0.f;
    w_input[l] = __half2float(p.weight[(d + l) * width + width - 1]);
    bias[l] = p.bias ? __half2float(p.bias[d + l]) : 0.f;
  }
  int n = sequence_of(p.query_start_loc, p.seqs, first);
  for (int t = first; t < end;) {
    while (p.query_start_loc[n + 1] <= t) ++n;  // past empty sequences; t < query_start_loc[seqs] stops it
    const int begin = p.query_start_loc[n], seq_end = min(end, p.query_start_loc[n + 1]);
    const int block = block_of(p, n);
    if (is_padding(p, block)) {
      t = seq_end;
      continue;
    }
    const __half* state = p.has_initial_state && p.has_initial_state[n]
                              ? p.conv_state + block * p.state_block_stride + d * p.state_dim_stride
                              : nullptr;
    float window[kMaxWidth - 1][kLanes];  // inputs at t - (width - 1) .. t - 1, oldest first
#pragma unroll
    for (int j = 0; j < kMaxWidth - 1; ++j) {
      if (j < width - 1) input_at<kLanes>(p, d, begin, t - begin - (width - 1) + j, state, window[j]);
    }
#pragma unroll(kLanes)  // two token steps in flight on the paired path; the single-channel one spilled at two
    for (; t < seq_end; ++t) {
      float x[kLanes], acc[kLanes];
      load_x<kLanes>(p, d, t, x);
#pragma unroll
      for (int l = 0; l < kLanes; ++l) {
        acc[l] = fmaf(w_input[l], x[l], bias[l]);
#pragma unroll
        for (int j = 0; j < kMaxWidth - 1; ++j) {
          if (j < width - 1) acc[l] = fmaf(w[j][l], window[j][l], acc[l]);
        }
        acc[l] = p.silu ? silu(acc[l]) : acc[l];
      }
      store_out<kLanes>(p, d, t, acc);
      // Slide: drop the oldest input, append this one at width - 2.
#pragma unroll
      for (int j = 0; j < kMaxWidth - 1; ++j) {
#pragma unroll
        for (int l = 0; l < kLanes; ++l) {
          if (j + 1 < width - 1) window[j][l] = window[j + 1][l];
          else if (j == width - 2) window[j][l] = x[l];
        }
      }
    }
  }
}

// Grid (seqs, ceil(dim / 128)): state of sequence n = its last width - 1 inputs (initial state or zeros
// before its first token). All reads first, then the writes: a short prompt reads the old state.
__global__ void conv_prefill_state_kernel(const GdnConvPrefillParams p) {
  const int n = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
  if (d >= p.dim) return;
  const int block = block_of(p, n);
  const int begin = p.query_start_loc[n], length = min(p.query_start_loc[n + 1], p.tokens) - begin;  // never past x
  if (is_padding(p, block) || length <= 0) return;  // an empty sequence keeps its state
  __half* state = p.conv_state + block * p.state_block_stride + d * p.state_dim_stride;
  const bool initial = p.has_initial_state && p.has_initial_state[n];
  float kept[kMaxWidth][1];
#pragma unroll
  for (int c = 0; c < kMaxWidth; ++c) {
    if (c < p.width - 1) input_at<1>(p, d, begin, length - (p.width - 1) + c, initial ? state : nullptr, kept[c]);
  }
#pragma unroll
  for (int c = 0; c < kMaxWidth; ++c) {
    if (c < p.width - 1) state[c * p.state_pos_stride] = __float2half_rn(kept[c][0]);
  }
}

}  // namespace

void launch_gdn_conv_prefill(const GdnConvPrefillParams& p, cudaStream_t stream) {
  if (p.seqs == 0 || p.tokens == 0 || p.dim == 0) return;
  // Two channels per thread (4-byte accesses) where x and out are dim-contiguous with 4-byte aligned rows.
  const bool pairs = p.dim % 2 == 0 && p.x_dim_stride == 1 && p.out_dim_stride == 1 && p.x_token_stride % 2 == 0 &&
                     p.out_token_stride % 2 == 0 && reinterpret_cast<uintptr_t>(p.x) % 4 == 0 &&
                     reinterpret_cast<uintptr_t>(p.out) % 4 == 0;
  const int lanes = pairs ? 2 : 1, channels_per_cta = kChannelThreads * lanes;
  const dim3 grid((p.tokens + kTokensPerCta - 1) / kTokensPerCta, (p.dim + channels_per_cta - 1) / channels_per_cta);
  if (pairs) {
    conv_prefill_kernel<2><<<grid, kChannelThreads * kTokenThreads, 0, stream>>>(p);
  } else {
    conv_prefill_kernel<1><<<grid, kChannelThreads * kTokenThreads, 0, stream>>>(p);
  }
  SM7X_CHECK_LAUNCH();
  if (p.width > 1) {
    conv_prefill_state_kernel<<<dim3(p.seqs, (p.dim + 127) / 128), 128, 0, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  }
}

}  // namespace sm7x
