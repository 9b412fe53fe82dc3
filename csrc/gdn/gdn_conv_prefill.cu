// Causal conv1d prefill kernels; see gdn_conv_prefill.h for the layouts and the rule.
#include "core/cuda_check.h"
#include "gdn/gdn_conv_prefill.h"

namespace sm7x {
namespace {

constexpr int kMaxWidth = 8;
constexpr int kChannels = 64;         // threads along dim per CTA (x rows are dim-contiguous: coalesced)
constexpr int kTokenThreads = 4;      // threads along tokens per CTA
constexpr int kTokensPerThread = 8;   // consecutive tokens per thread (their windows overlap in L1)
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

// Input at position pos of sequence n (begin: its first token): x where pos >= 0, else the initial
// state's column width - 1 + pos (zero without one).
__device__ __forceinline__ float input_at(const GdnConvPrefillParams& p, int d, int n, int begin, int pos,
                                          const __half* state) {
  if (pos >= 0) return __half2float(p.x[d * p.x_dim_stride + (int64_t)(begin + pos) * p.x_token_stride]);
  return state ? __half2float(state[(p.width - 1 + pos) * p.state_pos_stride]) : 0.f;
}

// Grid (ceil(tokens / kTokensPerCta), ceil(dim / kChannels)); thread (channel, token group). A thread's
// tokens may cross into the next sequence: each token finds its own.
__global__ void __launch_bounds__(kChannels * kTokenThreads) conv_prefill_kernel(const GdnConvPrefillParams p) {
  const int d = blockIdx.y * kChannels + threadIdx.x % kChannels;
  if (d >= p.dim) return;
  const int first = blockIdx.x * kTokensPerCta + threadIdx.x / kChannels * kTokensPerThread;
  const int start = max(first, p.query_start_loc[0]);  // tokens before the first offset belong to no sequence
  float w[kMaxWidth];
#pragma unroll
  for (int j = 0; j < kMaxWidth; ++j) w[j] = j < p.width ? __half2float(p.weight[d * p.width + j]) : 0.f;
  const float bias = p.bias ? __half2float(p.bias[d]) : 0.f;
  const int end = min(first + kTokensPerThread, min(p.tokens, p.query_start_loc[p.seqs]));  // no padding tokens
  for (int t = start; t < end; ++t) {
    const int n = sequence_of(p.query_start_loc, p.seqs, t);
    const int block = block_of(p, n);
    if (is_padding(p, block)) continue;
    const int begin = p.query_start_loc[n], pos = t - begin;
    const __half* state = p.has_initial_state && p.has_initial_state[n]
                              ? p.conv_state + block * p.state_block_stride + d * p.state_dim_stride
                              : nullptr;
    float acc = bias;
#pragma unroll
    for (int j = 0; j < kMaxWidth; ++j) {
      if (j < p.width) acc = fmaf(w[j], input_at(p, d, n, begin, pos - (p.width - 1) + j, state), acc);
    }
    p.out[d * p.out_dim_stride + (int64_t)t * p.out_token_stride] = __float2half_rn(p.silu ? silu(acc) : acc);
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
  float kept[kMaxWidth];
#pragma unroll
  for (int c = 0; c < kMaxWidth; ++c) {
    if (c < p.width - 1) kept[c] = input_at(p, d, n, begin, length - (p.width - 1) + c, initial ? state : nullptr);
  }
#pragma unroll
  for (int c = 0; c < kMaxWidth; ++c) {
    if (c < p.width - 1) state[c * p.state_pos_stride] = __float2half_rn(kept[c]);
  }
}

}  // namespace

void launch_gdn_conv_prefill(const GdnConvPrefillParams& p, cudaStream_t stream) {
  if (p.seqs == 0 || p.tokens == 0 || p.dim == 0) return;
  const int channel_blocks = (p.dim + kChannels - 1) / kChannels;
  conv_prefill_kernel<<<dim3((p.tokens + kTokensPerCta - 1) / kTokensPerCta, channel_blocks),
                        kChannels * kTokenThreads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
  if (p.width > 1) {
    conv_prefill_state_kernel<<<dim3(p.seqs, (p.dim + 127) / 128), 128, 0, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  }
}

}  // namespace sm7x
