// Arch-neutral (SIMT) Gated DeltaNet decode kernels; see gdn_decode.h for layouts.
//
// Recurrence per v-head (state S [v_dim][k_dim], fp32 in registers), as vLLM's Triton kernels do it:
//   g = -exp(A_log) * softplus(a + dt_bias);  beta = sigmoid(b)
//   q, k l2-normalised (eps 1e-6), q *= scale;  k-head = v-head / (v_heads / k_heads)
//   per token: S *= exp(g);  u = beta * (v - S k);  S += u k^T;  o = S q
// CTA = (sequence, v-head, 32 rows of S); 4 lanes per row, each owning k_dim / 4 columns in groups of 4
// interleaved across the lanes, so state loads and stores are 16-byte vectors that a warp coalesces.
#include <cmath>

#include "core/cuda_check.h"
#include "gdn/gdn_decode.h"
#include "gdn/gdn_state_io.cuh"

namespace sm7x {
namespace {

constexpr int kRowsPerCta = 32;
constexpr int kLanesPerRow = 4;
constexpr int kDecodeThreads = kRowsPerCta * kLanesPerRow;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float silu(float x) { return x / (1.f + __expf(-x)); }

__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(__expf(x)); }

struct TokenRange {
  int begin, count;
};

__device__ __forceinline__ TokenRange tokens_of(const GdnSequences& s, int n) {
  if (!s.cu_seqlens) return {n, 1};
  return {s.cu_seqlens[n], max(0, min(s.cu_seqlens[n + 1] - s.cu_seqlens[n], s.positions))};
}

__device__ __forceinline__ int first_column(const GdnSequences& s, int n) {
  return s.num_accepted ? max(0, min(s.num_accepted[n] - 1, s.positions - 1)) : 0;
}

// One channel of one sequence: the conv window starts at the last accepted position of the state
// (0 without MTP); the state becomes [window[1:], the sequence's inputs], written from position 0.
// Loops run to kMaxWidth with guards so the window stays in registers (no local-memory array).
__global__ void conv_update_kernel(GdnConvUpdateParams p) {
  const int n = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
  if (d >= p.dim) return;
  const TokenRange tokens = tokens_of(p.seq, n);
  const int block = p.seq.state_indices[n * p.seq.indices_stride];
  if (tokens.count == 0 || block <= 0) return;  // CUDA-graph padding / vLLM's null and pad blocks
  __half* state = p.conv_state + block * p.state_block_stride + d * p.state_dim_stride;
  const int offset = first_column(p.seq, n), width = p.width;
  constexpr int kMaxWidth = 8;
  float window[kMaxWidth];  // the width - 1 previous inputs, oldest first
  float w[kMaxWidth];
#pragma unroll
  for (int j = 0; j < kMaxWidth; ++j) {
    window[j] = j < width - 1 ? __half2float(state[(offset + j) * p.state_pos_stride]) : 0.f;
    w[j] = j < width - 1 ? __half2float(p.weight[d * width + j]) : 0.f;
  }
  const float w_input = __half2float(p.weight[d * width + width - 1]);  // the tap of the new input
  const float bias = p.bias ? __half2float(p.bias[d]) : 0.f;
  // The kept history first (reads above are done), then each input as it is consumed.
#pragma unroll
  for (int j = 0; j + 1 < kMaxWidth; ++j) {
    if (j + 1 < width - 1) state[j * p.state_pos_stride] = __float2half_rn(window[j + 1]);
  }
  for (int t = 0; t < tokens.count; ++t) {
    __half* x = p.x + (tokens.begin + t) * p.x_stride + d;
    const __half input = *x;
    float acc = bias;
#pragma unroll
    for (int j = 0; j < kMaxWidth; ++j) {
      if (j < width - 1) acc = fmaf(w[j], window[j], acc);
    }
    acc = fmaf(w_input, __half2float(input), acc);
    // Shift the window left by one and append the input at position width - 2.
#pragma unroll
    for (int j = 0; j + 1 < kMaxWidth; ++j) {
      if (j + 1 < width - 1) window[j] = window[j + 1];
      else if (j == width - 2) window[j] = __half2float(input);
    }
    if (width > 1) state[(width - 2 + t) * p.state_pos_stride] = input;
    *x = __float2half_rn(p.silu ? silu(acc) : acc);
  }
}

template <int kKDim, typename State>
__global__ void __launch_bounds__(kDecodeThreads) recurrent_kernel(GdnRecurrentParams p) {
  constexpr int kCols = kKDim / kLanesPerRow;  // state columns per thread
  constexpr int kGroups = kCols / 4;           // of 4 columns: group g of lane `part` is columns 4 (4 g + part) ..
  __shared__ __align__(16) float q_s[kKDim];
  __shared__ __align__(16) float k_s[kKDim];
  constexpr int kWarps = kDecodeThreads / 32;
  __shared__ float2 warp_norms[kWarps];  // each warp's (|q|^2, |k|^2) share, summed in warp order
  const int n = blockIdx.x, v_head = blockIdx.y;
  const int row = blockIdx.z * kRowsPerCta + threadIdx.x / kLanesPerRow, part = threadIdx.x % kLanesPerRow;
  const int k_head = v_head / (p.v_heads / p.k_heads);
  const TokenRange tokens = tokens_of(p.seq, n);
  const int* indices = p.seq.state_indices + n * p.seq.indices_stride;
  const int source = tokens.count > 0 ? indices[first_column(p.seq, n)] : 0;
  if (source <= 0) {  // padding: no state to read or update; zeros out (as vLLM's decode kernel)
    for (int t = 0; t < tokens.count; ++t) {
      if (part == 0 && row < p.v_dim) p.out[((int64_t)(tokens.begin + t) * p.v_heads + v_head) * p.v_dim + row] = __float2half_rn(0.f);
    }
    return;
  }
  const bool live_row = row < p.v_dim;  // v_dim % 32 == 0 (the op checks): whole warps
  const int64_t row_offset = ((int64_t)v_head * p.v_dim + row) * kKDim;
  float s[kCols];  // s[4 g + e] is column 4 (4 g + part) + e
  if (live_row) {
    const State* state = static_cast<const State*>(p.state) + source * p.state_block_stride + row_offset;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      float x[4];
      load4(state + 4 * (4 * g + part), x);
#pragma unroll
      for (int e = 0; e < 4; ++e) s[4 * g + e] = x[e];
    }
  }
  const float a_log = __expf(p.a_log[v_head]), dt_bias = __half2float(p.dt_bias[v_head]);

  for (int t = 0; t < tokens.count; ++t) {
    const int token = tokens.begin + t;
    const __half* qkv = p.qkv + token * p.qkv_stride;
    const __half* q = qkv + k_head * kKDim;
    const __half* k = qkv + (p.k_heads + k_head) * kKDim;
    // This token's gate inputs and value before the barriers, so their loads overlap the q/k reduction.
    const float a = __half2float(p.a[token * p.a_stride + v_head]) + dt_bias;
    const float b = __half2float(p.b[token * p.b_stride + v_head]);
    const float v = live_row ? __half2float(qkv[2 * p.k_heads * kKDim + v_head * p.v_dim + row]) : 0.f;
    __syncthreads();  // the previous token's q_s/k_s/warp_norms are no longer read
    float q_sq = 0.f, k_sq = 0.f;
    for (int i = threadIdx.x; i < kKDim; i += kDecodeThreads) {
      const float qi = __half2float(q[i]), ki = __half2float(k[i]);
      q_s[i] = qi;
      k_s[i] = ki;
      q_sq = fmaf(qi, qi, q_sq);
      k_sq = fmaf(ki, ki, k_sq);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      q_sq += __shfl_xor_sync(kFullMask, q_sq, offset);
      k_sq += __shfl_xor_sync(kFullMask, k_sq, offset);
    }
    if (threadIdx.x % 32 == 0) warp_norms[threadIdx.x / 32] = make_float2(q_sq, k_sq);
    __syncthreads();
    if (!live_row) continue;
    // In a fixed order (shared-memory atomics would sum in arrival order: the same step could differ
    // in its last bits from run to run).
    float2 norms = warp_norms[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) norms.x += warp_norms[w].x, norms.y += warp_norms[w].y;
    // q and k enter through their l2 norms; the factors are scalars, applied to the row sums.
    const float q_factor = p.scale * rsqrtf(norms.x + 1e-6f), k_factor = rsqrtf(norms.y + 1e-6f);
    const float decay = __expf(-a_log * softplus(a));
    float beta = 1.f / (1.f + __expf(-b));
    if (p.round_beta) beta = __half2float(__float2half_rn(beta));

    float sk = 0.f;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const float4 kv = reinterpret_cast<const float4*>(k_s)[4 * g + part];
      const float kx[4] = {kv.x, kv.y, kv.z, kv.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[4 * g + e] *= decay;
        sk = fmaf(s[4 * g + e], kx[e], sk);
      }
    }
    sk += __shfl_xor_sync(kFullMask, sk, 1);
    sk += __shfl_xor_sync(kFullMask, sk, 2);
    const float u = beta * (v - sk * k_factor) * k_factor;  // the update's weight on the raw k
    float o = 0.f;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const float4 kv = reinterpret_cast<const float4*>(k_s)[4 * g + part];
      const float4 qv = reinterpret_cast<const float4*>(q_s)[4 * g + part];
      const float kx[4] = {kv.x, kv.y, kv.z, kv.w}, qx[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[4 * g + e] = fmaf(u, kx[e], s[4 * g + e]);
        o = fmaf(s[4 * g + e], qx[e], o);
      }
    }
    o += __shfl_xor_sync(kFullMask, o, 1);
    o += __shfl_xor_sync(kFullMask, o, 2);
    if (part == 0) p.out[((int64_t)token * p.v_heads + v_head) * p.v_dim + row] = __float2half_rn(o * q_factor);
    const int target = indices[t];  // the state after this token (MTP: one block per draft position)
    if (target > 0) {
      State* state = static_cast<State*>(p.state) + target * p.state_block_stride + row_offset;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) store4(state + 4 * (4 * g + part), s + 4 * g);
    }
  }
}

template <int kKDim>
void launch_recurrent_for(const GdnRecurrentParams& p, cudaStream_t stream) {
  const dim3 grid(p.seq.seqs, p.v_heads, (p.v_dim + kRowsPerCta - 1) / kRowsPerCta);
  if (p.state_fp32) {
    recurrent_kernel<kKDim, float><<<grid, kDecodeThreads, 0, stream>>>(p);
  } else {
    recurrent_kernel<kKDim, __half><<<grid, kDecodeThreads, 0, stream>>>(p);
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace

void launch_gdn_conv_update(const GdnConvUpdateParams& p, cudaStream_t stream) {
  if (p.seq.seqs == 0) return;
  const int threads = 256;
  conv_update_kernel<<<dim3(p.seq.seqs, (p.dim + threads - 1) / threads), threads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

void launch_gdn_recurrent(const GdnRecurrentParams& p, int k_dim, cudaStream_t stream) {
  if (p.seq.seqs == 0) return;
  switch (k_dim) {
    case 64: return launch_recurrent_for<64>(p, stream);
    case 128: return launch_recurrent_for<128>(p, stream);
    case 256: return launch_recurrent_for<256>(p, stream);
    default: break;  // the op checks k_dim first
  }
}

}  // namespace sm7x
