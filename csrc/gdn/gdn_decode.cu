// Arch-neutral (SIMT) Gated DeltaNet decode kernels; see gdn_decode.h for layouts.
//
// Recurrence per v-head (state S [v_dim][k_dim], fp32 in registers), as vLLM's Triton kernels do it:
//   g = -exp(A_log) * softplus(a + dt_bias);  beta = sigmoid(b) (rounded to fp16, as vLLM does)
//   q, k l2-normalised (eps 1e-6), q *= scale;  k-head = v-head / (v_heads / k_heads)
//   S *= exp(g);  u = beta * (v - S k);  S += u k^T;  o = S q
// CTA = (token, v-head, 32 rows of S); 4 lanes per row, each owning k_dim / 4 columns.
#include <cmath>

#include "core/cuda_check.h"
#include "gdn/gdn_decode.h"

namespace sm7x {
namespace {

constexpr int kRowsPerCta = 32;
constexpr int kLanesPerRow = 4;
constexpr int kDecodeThreads = kRowsPerCta * kLanesPerRow;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float silu(float x) { return x / (1.f + __expf(-x)); }

__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(__expf(x)); }

__global__ void conv_update_kernel(GdnConvUpdateParams p) {
  const int token = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;  // tokens on x: no 65535 limit
  if (d >= p.dim) return;
  const int block = p.state_indices[token];
  if (block == 0) return;  // vLLM's null block: padding
  __half* state = p.conv_state + block * p.state_block_stride + d * p.state_dim_stride;
  __half* x = p.x + token * p.x_stride + d;
  const __half* w = p.weight + d * p.width;
  const float input = __half2float(*x);
  float acc = p.bias ? __half2float(p.bias[d]) : 0.f;
  // Window: the width - 1 previous inputs (oldest first), then this token's.
  for (int j = 0; j < p.width - 1; ++j) {
    const float previous = __half2float(state[j * p.state_pos_stride]);
    acc = fmaf(__half2float(w[j]), previous, acc);
    if (j > 0) state[(j - 1) * p.state_pos_stride] = state[j * p.state_pos_stride];
  }
  acc = fmaf(__half2float(w[p.width - 1]), input, acc);
  if (p.width > 1) state[(p.width - 2) * p.state_pos_stride] = *x;
  *x = __float2half_rn(p.silu ? silu(acc) : acc);
}

template <int kKDim, typename State>
__global__ void __launch_bounds__(kDecodeThreads) recurrent_decode_kernel(GdnRecurrentDecodeParams p) {
  constexpr int kCols = kKDim / kLanesPerRow;  // state columns per thread
  __shared__ float q_s[kKDim], k_s[kKDim], norms[2];
  const int token = blockIdx.x, v_head = blockIdx.y;
  const int row = blockIdx.z * kRowsPerCta + threadIdx.x / kLanesPerRow, part = threadIdx.x % kLanesPerRow;
  const int k_head = v_head / (p.v_heads / p.k_heads);
  const int block = p.state_indices[token];
  __half* out = p.out + ((int64_t)token * p.v_heads + v_head) * p.v_dim;
  if (block <= 0) {  // padding: no state to update, zeros out (as vLLM's packed decode)
    if (part == 0 && row < p.v_dim) out[row] = __float2half_rn(0.f);
    return;
  }

  // q and k of this v-head's k-head, and their l2 norms.
  const __half* qkv = p.qkv + token * p.qkv_stride;
  const __half* q = qkv + k_head * kKDim;
  const __half* k = qkv + (p.k_heads + k_head) * kKDim;
  if (threadIdx.x < 2) norms[threadIdx.x] = 0.f;
  __syncthreads();
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
  if (threadIdx.x % 32 == 0) {
    atomicAdd(&norms[0], q_sq);
    atomicAdd(&norms[1], k_sq);
  }
  __syncthreads();
  const float q_factor = p.scale * rsqrtf(norms[0] + 1e-6f), k_factor = rsqrtf(norms[1] + 1e-6f);

  const float a = __half2float(p.a[token * p.a_stride + v_head]) + __half2float(p.dt_bias[v_head]);
  const float decay = __expf(-__expf(p.a_log[v_head]) * softplus(a));
  const float b = __half2float(p.b[token * p.b_stride + v_head]);
  const float beta = __half2float(__float2half_rn(1.f / (1.f + __expf(-b))));
  if (row >= p.v_dim) return;  // after the last barrier; v_dim % 32 == 0 (the op checks), so whole warps
  const float v = __half2float(qkv[2 * p.k_heads * kKDim + v_head * p.v_dim + row]);

  State* state = static_cast<State*>(p.state) + block * p.state_block_stride +
                 ((int64_t)v_head * p.v_dim + row) * kKDim + part * kCols;
  float s[kCols];
  float sk = 0.f;
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    s[c] = static_cast<float>(state[c]) * decay;
    sk = fmaf(s[c], k_s[part * kCols + c] * k_factor, sk);
  }
  sk += __shfl_xor_sync(kFullMask, sk, 1);
  sk += __shfl_xor_sync(kFullMask, sk, 2);
  const float u = beta * (v - sk);
  float o = 0.f;
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    s[c] = fmaf(u, k_s[part * kCols + c] * k_factor, s[c]);
    o = fmaf(s[c], q_s[part * kCols + c] * q_factor, o);
    state[c] = static_cast<State>(s[c]);
  }
  o += __shfl_xor_sync(kFullMask, o, 1);
  o += __shfl_xor_sync(kFullMask, o, 2);
  if (part == 0) out[row] = __float2half_rn(o);
}

template <int kKDim>
void launch_decode_for(const GdnRecurrentDecodeParams& p, cudaStream_t stream) {
  const dim3 grid(p.tokens, p.v_heads, (p.v_dim + kRowsPerCta - 1) / kRowsPerCta);
  if (p.state_fp32) {
    recurrent_decode_kernel<kKDim, float><<<grid, kDecodeThreads, 0, stream>>>(p);
  } else {
    recurrent_decode_kernel<kKDim, __half><<<grid, kDecodeThreads, 0, stream>>>(p);
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace

void launch_gdn_conv_update(const GdnConvUpdateParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return;
  const int threads = 256;
  conv_update_kernel<<<dim3(p.tokens, (p.dim + threads - 1) / threads), threads, 0, stream>>>(p);
  SM7X_CHECK_LAUNCH();
}

void launch_gdn_recurrent_decode(const GdnRecurrentDecodeParams& p, int k_dim, cudaStream_t stream) {
  if (p.tokens == 0) return;
  switch (k_dim) {
    case 64: return launch_decode_for<64>(p, stream);
    case 128: return launch_decode_for<128>(p, stream);
    case 256: return launch_decode_for<256>(p, stream);
    default: break;  // the op checks k_dim first
  }
}

}  // namespace sm7x
