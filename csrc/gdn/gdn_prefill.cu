// Arch-neutral (SIMT) chunked Gated DeltaNet prefill; layouts in gdn_prefill.h.
//
// Chunk algebra, per v-head, for a chunk of C tokens entered with state S0 (G_i = g_1 + ... + g_i
// within the chunk, so every exp(G_i - G_j) used, j <= i, is at most 1):
//   u_j = beta_j (v_j - exp(G_j) S0 k_j - sum_{m<j} exp(G_j - G_m) (k_j . k_m) u_m)   (the update of token j)
//   => (I + A) U = beta V - (beta exp(G) K) S0^T  with  A_jm = beta_j exp(G_j - G_m) (k_j . k_m), m < j
//   => U = Uraw - W S0^T,  [W | Uraw] = (I + A)^-1 [beta exp(G) K | beta V]   (forward substitution)
//   o_i = exp(G_i) S0 q_i + sum_{j<=i} exp(G_i - G_j) (q_i . k_j) u_j           (q pre-scaled)
//   S_C = exp(G_C) S0 + sum_j exp(G_C - G_j) u_j k_j^T
// CTA = (sequence, v-head, 32 rows of S); 8 lanes per row hold k_dim / 8 state columns each in
// registers, in groups of 4 interleaved across the lanes. A chunk's k, q, W and the small matrices
// live in shared memory (under 30 KB at k_dim 128: fits Turing and Volta); W and Uraw depend only on
// k, g and beta, so the CTAs of one head each recompute them rather than pass them through memory.
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "gdn/gdn_prefill.h"
#include "gdn/gdn_state_io.cuh"

namespace sm7x {
namespace {

constexpr int kRows = 32;                  // state rows (v) per CTA
constexpr int kLanes = 8;                  // lanes per state row
constexpr int kThreads = kRows * kLanes;
constexpr int kChunk = 16;                 // tokens per chunk (<= 32: one warp scans the gates)
constexpr unsigned kFullMask = 0xffffffffu;

template <int kKDim>
struct ChunkTiles {
  // Rows 16 bytes longer than k_dim: the pairwise dots read 8 rows at once from different banks.
  static constexpr int kPitch = kKDim + 4;
  float k[kChunk][kPitch];
  float q[kChunk][kPitch];  // times the softmax-free attention scale
  float w[kChunk][kPitch];  // beta exp(G) k, then W
  float u[kChunk][kRows];   // beta v (this CTA's rows), then Uraw
  float a[kChunk][kChunk];  // A, zero on and above the diagonal
  float p[kChunk][kChunk];  // exp(G_i - G_j) (q_i . k_j) for j <= i, else zero
  float gcum[kChunk];       // G
  float beta[kChunk];
};

__device__ __forceinline__ float dot4(const float4& x, const float4& y, float acc) {
  return fmaf(x.w, y.w, fmaf(x.z, y.z, fmaf(x.y, y.y, fmaf(x.x, y.x, acc))));
}

__device__ __forceinline__ float4 column4(const float* row, int col) {
  return *reinterpret_cast<const float4*>(row + col);
}

// Stages one chunk: k, scaled q, this CTA's v rows, beta and the cumulative log decay; rows past the
// sequence's end are zeros (a zero beta and k make them no-ops in every product below).
template <int kKDim>
__device__ void load_chunk(const GdnPrefillParams& p, ChunkTiles<kKDim>& t, int first_token, int count, int v_head,
                           int k_head) {
  const __half* q = static_cast<const __half*>(p.q);
  const __half* k = static_cast<const __half*>(p.k);
  const __half* v = static_cast<const __half*>(p.v);
  for (int i = threadIdx.x; i < kChunk * kKDim; i += kThreads) {
    const int j = i / kKDim, col = i % kKDim;
    const int64_t token = first_token + j;
    t.k[j][col] = j < count ? __half2float(k[token * p.k_stride + k_head * kKDim + col]) : 0.f;
    t.q[j][col] = j < count ? __half2float(q[token * p.q_stride + k_head * kKDim + col]) * p.scale : 0.f;
  }
  for (int i = threadIdx.x; i < kChunk * kRows; i += kThreads) {
    const int j = i / kRows, r = i % kRows;
    const int64_t token = first_token + j;
    t.u[j][r] = j < count ? __half2float(v[token * p.v_stride + v_head * p.v_dim + blockIdx.z * kRows + r]) : 0.f;
  }
  if (threadIdx.x < 32) {  // an inclusive scan of the log decays in warp 0
    const int j = threadIdx.x;
    const int64_t token = first_token + j;
    float g = j < count ? p.g[token * p.g_stride + v_head] : 0.f;
#pragma unroll
    for (int offset = 1; offset < kChunk; offset *= 2) {
      const float below = __shfl_up_sync(kFullMask, g, offset);
      if (j >= offset) g += below;
    }
    if (j < kChunk) {
      t.gcum[j] = g;
      t.beta[j] = j < count ? p.beta[token * p.beta_stride + v_head] : 0.f;
    }
  }
}

// A, P and the right-hand sides [beta exp(G) K | beta V]; then (I + A) X = B solved in place, one
// column per thread (columns are independent: no barrier inside the substitution).
template <int kKDim>
__device__ void solve_chunk(ChunkTiles<kKDim>& t) {
  for (int pair = threadIdx.x; pair < kChunk * kChunk; pair += kThreads) {
    const int i = pair / kChunk, j = pair % kChunk;
    float kk = 0.f, qk = 0.f;
    if (j <= i) {
#pragma unroll 8
      for (int c = 0; c < kKDim; c += 4) {
        const float4 kj = column4(t.k[j], c);
        kk = dot4(column4(t.k[i], c), kj, kk);
        qk = dot4(column4(t.q[i], c), kj, qk);
      }
    }
    // exp only where j <= i: above the diagonal the exponent is positive and may overflow.
    const float decay = j <= i ? __expf(t.gcum[i] - t.gcum[j]) : 0.f;
    t.a[i][j] = j < i ? t.beta[i] * decay * kk : 0.f;
    t.p[i][j] = decay * qk;
  }
  for (int i = threadIdx.x; i < kChunk * kKDim; i += kThreads) {
    const int j = i / kKDim, col = i % kKDim;
    t.w[j][col] = t.beta[j] * __expf(t.gcum[j]) * t.k[j][col];
  }
  for (int i = threadIdx.x; i < kChunk * kRows; i += kThreads) t.u[i / kRows][i % kRows] *= t.beta[i / kRows];
  __syncthreads();
  if (threadIdx.x < kKDim + kRows) {
    const bool w_column = threadIdx.x < kKDim;
    float* column = w_column ? &t.w[0][threadIdx.x] : &t.u[0][threadIdx.x - kKDim];
    const int pitch = w_column ? ChunkTiles<kKDim>::kPitch : kRows;
    float x[kChunk];
#pragma unroll
    for (int i = 0; i < kChunk; ++i) {
      float xi = column[i * pitch];
#pragma unroll
      for (int m = 0; m < i; ++m) xi = fmaf(-t.a[i][m], x[m], xi);
      x[i] = xi;
      column[i * pitch] = xi;
    }
  }
}

template <int kKDim, typename State>
__global__ void __launch_bounds__(kThreads) chunk_prefill_kernel(GdnPrefillParams p) {
  constexpr int kCols = kKDim / kLanes;  // state columns per lane
  constexpr int kGroups = kCols / 4;     // group g of lane `part` is columns 4 (kLanes g + part) ..
  __shared__ __align__(16) ChunkTiles<kKDim> t;
  const int n = blockIdx.x, v_head = blockIdx.y;
  const int row = threadIdx.x / kLanes, part = threadIdx.x % kLanes;
  const int v = blockIdx.z * kRows + row;  // v_dim % 32 == 0 (the op checks): every row is live
  const int k_head = v_head / (p.v_heads / p.k_heads);
  // Out-of-range cu_seqlens cannot fault: the sequence is cut to the tokens that exist.
  const int begin = min(max(p.cu_seqlens[n], 0), p.tokens);
  const int end = min(max(p.cu_seqlens[n + 1], begin), p.tokens);
  const int64_t state_offset = (((int64_t)n * p.v_heads + v_head) * p.v_dim + v) * kKDim;

  float s[kCols];  // s[4 g + e] is state column 4 (kLanes g + part) + e of row v
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    const int col = 4 * (kLanes * g + part);
    if (p.initial_state) {
      load4(static_cast<const State*>(p.initial_state) + state_offset + col, s + 4 * g);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[4 * g + e] = 0.f;
    }
  }

  __half* out = static_cast<__half*>(p.out);
  for (int first = begin; first < end; first += kChunk) {
    const int count = min(kChunk, end - first);
    __syncthreads();  // the previous chunk's tiles are no longer read
    load_chunk<kKDim>(p, t, first, count, v_head, k_head);
    __syncthreads();
    solve_chunk<kKDim>(t);
    __syncthreads();

    // U = Uraw - W S0^T and S0 q_i for this row: 8-lane partial dots, reduced across the row's lanes.
    float u[kChunk], sq[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      float ws = 0.f, qs = 0.f;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const int col = 4 * (kLanes * g + part);
        const float4 state = make_float4(s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]);
        ws = dot4(column4(t.w[j], col), state, ws);
        qs = dot4(column4(t.q[j], col), state, qs);
      }
#pragma unroll
      for (int offset = 1; offset < kLanes; offset *= 2) {
        ws += __shfl_xor_sync(kFullMask, ws, offset);
        qs += __shfl_xor_sync(kFullMask, qs, offset);
      }
      u[j] = t.u[j][row] - ws;
      sq[j] = qs;
    }
    // Outputs: every lane of the row computes them, lane i % 8 stores token i.
#pragma unroll
    for (int i = 0; i < kChunk; ++i) {
      float o = __expf(t.gcum[i]) * sq[i];
#pragma unroll
      for (int j = 0; j <= i; ++j) o = fmaf(t.p[i][j], u[j], o);
      if (i % kLanes == part && i < count) {
        out[((int64_t)(first + i) * p.v_heads + v_head) * p.v_dim + v] = __float2half_rn(o);
      }
    }
    // The state after the chunk (padding rows have u = 0 and k = 0).
    const float g_last = t.gcum[kChunk - 1];
    float weight[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) weight[j] = __expf(g_last - t.gcum[j]) * u[j];
    const float chunk_decay = __expf(g_last);
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int col = 4 * (kLanes * g + part);
      float4 acc = make_float4(s[4 * g] * chunk_decay, s[4 * g + 1] * chunk_decay, s[4 * g + 2] * chunk_decay,
                               s[4 * g + 3] * chunk_decay);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) {
        const float4 kj = column4(t.k[j], col);
        acc.x = fmaf(weight[j], kj.x, acc.x);
        acc.y = fmaf(weight[j], kj.y, acc.y);
        acc.z = fmaf(weight[j], kj.z, acc.z);
        acc.w = fmaf(weight[j], kj.w, acc.w);
      }
      s[4 * g] = acc.x, s[4 * g + 1] = acc.y, s[4 * g + 2] = acc.z, s[4 * g + 3] = acc.w;
    }
  }
#pragma unroll
  for (int g = 0; g < kGroups; ++g) store4(p.final_state + state_offset + 4 * (kLanes * g + part), s + 4 * g);
}

template <int kKDim>
void launch_prefill_for(const GdnPrefillParams& p, cudaStream_t stream) {
  const dim3 grid(p.seqs, p.v_heads, p.v_dim / kRows);
  if (p.initial_state && !p.initial_state_fp32) {
    chunk_prefill_kernel<kKDim, __half><<<grid, kThreads, 0, stream>>>(p);
  } else {
    chunk_prefill_kernel<kKDim, float><<<grid, kThreads, 0, stream>>>(p);
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace

void launch_gdn_chunk_prefill(const GdnPrefillParams& p, int k_dim, cudaStream_t stream) {
  if (p.seqs == 0) return;
  switch (k_dim) {
    case 64: return launch_prefill_for<64>(p, stream);
    case 128: return launch_prefill_for<128>(p, stream);
    default: break;  // the op checks k_dim first
  }
}

}  // namespace sm7x
