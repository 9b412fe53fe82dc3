// Arch-neutral (SIMT) chunked Gated DeltaNet prefill; layouts in gdn_prefill.h.
//
// Chunk algebra, per v-head, for a chunk of C tokens entered with state S0 (G_i = g_1 + ... + g_i
// within the chunk, so every exp(G_i - G_j) used, j <= i, is at most 1):
//   u_j = beta_j (v_j - exp(G_j) S0 k_j - sum_{m<j} exp(G_j - G_m) (k_j . k_m) u_m)   (the update of token j)
//   => (I + A) U = beta V - (beta exp(G) K) S0^T  with  A_jm = beta_j exp(G_j - G_m) (k_j . k_m), m < j
//   => U = Uraw - W S0^T,  [W | Uraw] = (I + A)^-1 [beta exp(G) K | beta V]   (forward substitution)
//   o_i = exp(G_i) S0 q_i + sum_{j<=i} exp(G_i - G_j) (q_i . k_j) u_j           (q pre-scaled)
//   S_C = exp(G_C) S0 + sum_j exp(G_C - G_j) u_j k_j^T
// W, Uraw and P = exp(G_i - G_j) (q_i . k_j) depend only on k, q, g, beta and v, not on the state, so
// two passes split the work:
//  - pass 1 (chunk_solve_kernel) solves every chunk of every sequence at once (CTA = chunk, v-head:
//    A, P, then W and Uraw for the head's whole v width) and writes them per token to a workspace;
//  - pass 2 (chunk_state_kernel) walks each sequence's chunks in order (CTA = sequence, v-head, 16
//    state rows; k_dim / 8 lanes per row hold 8 state columns each in registers, in two groups of 4
//    interleaved across the lanes), applying them to its rows: outputs, then the state after the chunk.
// A single pass that solved each chunk inside the sequential walk took twice as long (H200: 0.65 against
// 0.33 ms for a 1024-token prompt at 27B TP4): a third as many CTAs, each latency-bound on the solve
// between its barriers.
// Pass 2 keeps 8 state columns per lane (16 lanes per row at k_dim 128: 8 warps per CTA), sums each
// token's partial dots across the row by recursive halving (each lane ends with its tokens' sums:
// the outputs are computed once, by their owners), and loads chunk i + 1 while it applies chunk i.
// Shared memory per CTA stays under 30 KB at k_dim 128 (fits Turing and Volta).
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "gdn/gdn_prefill.h"
#include "gdn/gdn_state_io.cuh"

namespace sm7x {
namespace {

constexpr int kStateRows = 16;             // state rows per CTA of pass 2
constexpr int kColsPerLane = 8;            // state columns per lane of pass 2: two float4 groups
constexpr int kGroups = kColsPerLane / 4;
template <int kKDim>
constexpr int kLanes = kKDim / kColsPerLane;  // lanes per state row: 8 (k_dim 64) or 16 (k_dim 128)
template <int kKDim>
constexpr int kStateThreads = kStateRows * kLanes<kKDim>;
constexpr int kSolveThreads = 128;         // pass 1: one W or Uraw column per thread at a time
constexpr int kChunk = 16;                 // tokens per chunk (<= 32: one warp scans the gates)
constexpr unsigned kFullMask = 0xffffffffu;

// Rows 16 bytes longer than k_dim: the pairwise dots read 8 rows at once from different banks.
template <int kKDim>
constexpr int kTilePitch = kKDim + 4;

// Pass 2's tiles: one solved chunk.
template <int kKDim>
struct ChunkTiles {
  static constexpr int kPitch = kTilePitch<kKDim>;
  float k[kChunk][kPitch];
  float q[kChunk][kPitch];      // times the softmax-free attention scale
  float w[kChunk][kPitch];      // W
  // Transposed, so the lanes of a row, which read one token each, read consecutive words:
  float u_t[kStateRows][kChunk];  // Uraw: [state row][token]
  float p_t[kChunk][kChunk];      // P: [j][i] = exp(G_i - G_j) (q_i . k_j) for j <= i, else zero
  float gcum[kChunk];           // G
};

// Pass 1's tiles: no W or U (their columns stay in registers), and the chunk it was given.
template <int kKDim>
struct SolveTiles {
  float k[kChunk][kTilePitch<kKDim>];
  float q[kChunk][kTilePitch<kKDim>];
  float a[kChunk][kChunk];
  float gcum[kChunk];
  float beta[kChunk];
  int first, count;  // the chunk's first token and length (0: this CTA has no chunk)
};

// Pass 1 -> pass 2, one record per (token, v-head) in the workspace: W's row (k_dim), Uraw's row
// (v_dim), P's row (kChunk), G and 3 floats of padding, so every part starts 16-byte aligned (k_dim
// and v_dim are multiples of 4) and pass 2 reads them as float4.
constexpr int kRecordTail = kChunk + 4;  // P's row, G, padding
__host__ __device__ constexpr int64_t record_floats(int k_dim, int v_dim) { return k_dim + v_dim + kRecordTail; }

__device__ __forceinline__ float dot4(const float4& x, const float4& y, float acc) {
  return fmaf(x.w, y.w, fmaf(x.z, y.z, fmaf(x.y, y.y, fmaf(x.x, y.x, acc))));
}

__device__ __forceinline__ float4 column4(const float* row, int col) {
  return *reinterpret_cast<const float4*>(row + col);
}

// A chunk's k and scaled q; rows past the sequence's end are zeros (a zero beta and k make them no-ops
// in every product below).
template <int kKDim>
__device__ void load_qk(const GdnPrefillParams& p, float (*k_tile)[kTilePitch<kKDim>],
                        float (*q_tile)[kTilePitch<kKDim>], int first_token, int count, int k_head) {
  const __half* q = static_cast<const __half*>(p.q);
  const __half* k = static_cast<const __half*>(p.k);
  for (int i = threadIdx.x; i < kChunk * kKDim; i += kSolveThreads) {
    const int j = i / kKDim, col = i % kKDim;
    const int64_t token = first_token + j;
    k_tile[j][col] = j < count ? __half2float(k[token * p.k_stride + k_head * kKDim + col]) : 0.f;
    q_tile[j][col] = j < count ? __half2float(q[token * p.q_stride + k_head * kKDim + col]) * p.scale : 0.f;
  }
}

// beta and the cumulative log decay G (an inclusive scan in warp 0; padding rows add nothing, so they
// hold the last token's G).
__device__ void scan_gates(const GdnPrefillParams& p, float* gcum, float* beta, int first_token, int count,
                           int v_head) {
  if (threadIdx.x < 32) {
    const int j = threadIdx.x;
    const int64_t token = first_token + j;
    float g = j < count ? p.g[token * p.g_stride + v_head] : 0.f;
#pragma unroll
    for (int offset = 1; offset < kChunk; offset *= 2) {
      const float below = __shfl_up_sync(kFullMask, g, offset);
      if (j >= offset) g += below;
    }
    if (j < kChunk) {
      gcum[j] = g;
      beta[j] = j < count ? p.beta[token * p.beta_stride + v_head] : 0.f;
    }
  }
}

// A (strictly lower) and P (lower with the diagonal) of a chunk into a and p_row(i)[j].
template <int kKDim, typename PRow>
__device__ void pair_products(const float (*k)[kTilePitch<kKDim>], const float (*q)[kTilePitch<kKDim>],
                              const float* gcum, const float* beta, float (*a)[kChunk], PRow p_row) {
  for (int pair = threadIdx.x; pair < kChunk * kChunk; pair += kSolveThreads) {
    const int i = pair / kChunk, j = pair % kChunk;
    float kk = 0.f, qk = 0.f;
    if (j <= i) {
#pragma unroll 8
      for (int c = 0; c < kKDim; c += 4) {
        const float4 kj = column4(k[j], c);
        kk = dot4(column4(k[i], c), kj, kk);
        qk = dot4(column4(q[i], c), kj, qk);
      }
    }
    // exp only where j <= i: above the diagonal the exponent is positive and may overflow.
    const float decay = j <= i ? __expf(gcum[i] - gcum[j]) : 0.f;
    a[i][j] = j < i ? beta[i] * decay * kk : 0.f;
    p_row(i, j, decay * qk);
  }
}

// Solves (I + A) x = b for one column, row by row: b_i = rhs(i), and solved(i, x_i) as each is known.
template <typename Rhs, typename Solved>
__device__ __forceinline__ void forward_substitute(const float (*a)[kChunk], Rhs rhs, Solved solved) {
  float x[kChunk];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) {
    float xi = rhs(i);
#pragma unroll
    for (int m = 0; m < i; ++m) xi = fmaf(-a[i][m], x[m], xi);
    x[i] = xi;
    solved(i, xi);
  }
}

// The state column of lane `part`'s group g: groups of 4 interleaved across the row's lanes, so a
// row's lanes read whole sectors together.
template <int kKDim>
__device__ __forceinline__ int state_column(int g, int part) { return 4 * (kLanes<kKDim> * g + part); }

// One CTA's state rows: lane `part` of row v holds its columns state_column(g, part) .. + 3 in
// s[4 g ..]; read from the initial state (zeros without one), written to the final state.
template <int kKDim, typename State>
__device__ __forceinline__ void load_state_rows(const GdnPrefillParams& p, int64_t state_offset, int part,
                                                float* s) {
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    const int col = state_column<kKDim>(g, part);
    if (p.initial_state) {
      load4(static_cast<const State*>(p.initial_state) + state_offset + col, s + 4 * g);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[4 * g + e] = 0.f;
    }
  }
}

template <int kKDim>
__device__ __forceinline__ void store_state_rows(const GdnPrefillParams& p, int64_t state_offset, int part,
                                                 const float* s) {
#pragma unroll
  for (int g = 0; g < kGroups; ++g) store4(p.final_state + state_offset + state_column<kKDim>(g, part), s + 4 * g);
}

// Sums over the kLanes lanes of each state row, each lane's 16 partial sums in: lane `part` ends
// with the totals of tokens part, part + kLanes, ... in slots 0, kLanes, ... (recursive halving: 15
// shuffles for 16 lanes where an all-reduce of every token takes 64).
template <int kLanesPerRow>
__device__ __forceinline__ void reduce_scatter(float (&x)[kChunk], int part) {
#pragma unroll
  for (int half = kLanesPerRow / 2; half >= 1; half /= 2) {
    const bool upper = part & half;  // this lane keeps the upper token of each pair, its partner the lower
#pragma unroll
    for (int i = 0; i < kChunk; ++i) {
      if (i % kLanesPerRow < half) {
        const float keep = upper ? x[i + half] : x[i], send = upper ? x[i] : x[i + half];
        x[i] = keep + __shfl_xor_sync(kFullMask, send, half);
      }
    }
  }
}

// The inverse of reduce_scatter's layout: every lane of the row gets every token's value.
template <int kLanesPerRow>
__device__ __forceinline__ void all_gather(float (&x)[kChunk]) {
  float mine[kChunk / kLanesPerRow];
#pragma unroll
  for (int m = 0; m < kChunk / kLanesPerRow; ++m) mine[m] = x[m * kLanesPerRow];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) {
    x[i] = __shfl_sync(kFullMask, mine[i / kLanesPerRow], i % kLanesPerRow, kLanesPerRow);
  }
}

// A solved chunk (t.w = W, t.u = this CTA's Uraw rows, t.p, t.gcum, t.k, t.q) applied to state row v
// (this thread's part s): the chunk's outputs for row v, then the state after it.
template <int kKDim>
__device__ __forceinline__ void apply_chunk(const GdnPrefillParams& p, const ChunkTiles<kKDim>& t,
                                            int row, int part, int v, int v_head, int first, int count, float* s) {
  constexpr int kRowLanes = kLanes<kKDim>;
  // S0 q_i and W S0^T for this row: each lane's partial dots over its columns, summed across the row,
  // one product at a time (16 partial sums live at once, not 32).
  auto row_dots = [&](const float (*tile)[kTilePitch<kKDim>], float (&dots)[kChunk]) {
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      dots[j] = 0.f;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const float4 state = make_float4(s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]);
        dots[j] = dot4(column4(tile[j], state_column<kKDim>(g, part)), state, dots[j]);
      }
    }
    reduce_scatter<kRowLanes>(dots, part);
  };
  float qs[kChunk], ws[kChunk];
  row_dots(t.q, qs);
  row_dots(t.w, ws);
  // U = Uraw - W S0^T for this lane's tokens, then every token's for the whole row.
  float u[kChunk];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) u[i] = i % kRowLanes == 0 ? t.u_t[row][i + part] - ws[i] : 0.f;
  all_gather<kRowLanes>(u);
  // Outputs: lane `part` computes and stores tokens part, part + kRowLanes, ...
  __half* out = static_cast<__half*>(p.out);
#pragma unroll
  for (int m = 0; m < kChunk; m += kRowLanes) {
    const int i = m + part;
    float o = __expf(t.gcum[i]) * qs[m];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) o = fmaf(t.p_t[j][i], u[j], o);  // P is zero above the diagonal
    if (i < count) out[((int64_t)(first + i) * p.v_heads + v_head) * p.v_dim + v] = __float2half_rn(o);
  }
  // The state after the chunk (padding rows have u = 0 and k = 0).
  const float g_last = t.gcum[kChunk - 1];
  float weight[kChunk];
#pragma unroll
  for (int j = 0; j < kChunk; ++j) weight[j] = __expf(g_last - t.gcum[j]) * u[j];
  const float chunk_decay = __expf(g_last);
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    const int col = state_column<kKDim>(g, part);
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

// Sequence n's token range; out-of-range cu_seqlens cannot fault: the sequence is cut to the tokens
// that exist.
__device__ __forceinline__ void sequence_range(const GdnPrefillParams& p, int n, int& begin, int& end) {
  begin = min(max(p.cu_seqlens[n], 0), p.tokens);
  end = min(max(p.cu_seqlens[n + 1], begin), p.tokens);
}

// Pass 1: which chunk CTA `slot` solves. Slots number the chunks of the sequences in
// order (each sequence's chunks start at its first token); warp 0 walks the sequences 32 at a time
// (a prefix sum of their chunk counts), so no host sync or extra launch builds a chunk table.
__device__ void find_chunk(const GdnPrefillParams& p, int slot, int& first, int& count) {
  const int lane = threadIdx.x;
  int seen = 0;  // chunks of the sequences before this group of 32
  for (int base = 0; base < p.seqs; base += 32) {
    const int n = base + lane;
    int begin = 0, end = 0;
    if (n < p.seqs) sequence_range(p, n, begin, end);
    const int chunks = (end - begin + kChunk - 1) / kChunk;
    int inclusive = chunks;
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const int below = __shfl_up_sync(kFullMask, inclusive, offset);
      if (lane >= offset) inclusive += below;
    }
    const int group_total = __shfl_sync(kFullMask, inclusive, 31);
    if (slot < seen + group_total) {  // one lane's chunks hold the slot
      const int before = seen + inclusive - chunks;
      const int owner = __ffs(__ballot_sync(kFullMask, slot >= before && slot < before + chunks)) - 1;
      const int chunk = slot - __shfl_sync(kFullMask, before, owner);
      const int owner_begin = __shfl_sync(kFullMask, begin, owner), owner_end = __shfl_sync(kFullMask, end, owner);
      first = owner_begin + chunk * kChunk;
      count = min(kChunk, owner_end - first);
      return;
    }
    seen += group_total;
  }
  first = 0, count = 0;
}

// Pass 1: CTA = (chunk slot, v-head). Writes, per token of the chunk, the record W | Uraw | P | G.
template <int kKDim>
__global__ void __launch_bounds__(kSolveThreads) chunk_solve_kernel(GdnPrefillParams p, float* records) {
  __shared__ __align__(16) SolveTiles<kKDim> t;
  const int v_head = blockIdx.y, k_head = v_head / (p.v_heads / p.k_heads);
  if (threadIdx.x < 32) {
    int first, count;
    find_chunk(p, blockIdx.x, first, count);
    if (threadIdx.x == 0) t.first = first, t.count = count;
  }
  __syncthreads();
  const int first = t.first, count = t.count;
  if (count == 0) return;  // a spare slot (the grid counts tokens / kChunk + seqs): the whole CTA leaves
  load_qk<kKDim>(p, t.k, t.q, first, count, k_head);
  scan_gates(p, t.gcum, t.beta, first, count, v_head);
  __syncthreads();
  const int64_t pitch = record_floats(kKDim, p.v_dim), token_step = p.v_heads * pitch;
  const int p_col = kKDim + p.v_dim, g_col = p_col + kChunk;
  float* records_of_chunk = records + ((int64_t)first * p.v_heads + v_head) * pitch;
  pair_products<kKDim>(t.k, t.q, t.gcum, t.beta, t.a, [&](int i, int j, float value) {
    if (i < count) records_of_chunk[i * token_step + p_col + j] = value;
  });
  if (threadIdx.x < count) records_of_chunk[threadIdx.x * token_step + g_col] = t.gcum[threadIdx.x];
  __syncthreads();
  // Columns of [beta exp(G) K | beta V] (V's whole width: the head's every state row reads them),
  // each solved through (I + A) in registers and written out.
  const __half* v = static_cast<const __half*>(p.v) + (int64_t)first * p.v_stride + v_head * p.v_dim;
  for (int col = threadIdx.x; col < kKDim + p.v_dim; col += kSolveThreads) {
    float rhs[kChunk];  // all loaded before the substitution: its stores would otherwise order them
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      rhs[j] = t.beta[j] * (col < kKDim ? __expf(t.gcum[j]) * t.k[j][col]
                                        : (j < count ? __half2float(v[j * p.v_stride + col - kKDim]) : 0.f));
    }
    forward_substitute(t.a, [&](int j) { return rhs[j]; }, [&](int j, float x) {
      if (j < count) records_of_chunk[j * token_step + col] = x;
    });
  }
}

// Pass 2's staging of one chunk (k, scaled q, W, this CTA's Uraw rows, P and G), in two steps: a
// thread's loads into registers, then its stores into the tiles. The next chunk's loads are issued
// before the current chunk is applied, so their latency hides behind that work.
template <int kKDim>
struct StagedChunk {
  static constexpr int kQkLoads = kChunk * kKDim / kStateThreads<kKDim>;     // halves of k (and of q) per thread
  static constexpr int kWLoads = kChunk * kKDim / 4 / kStateThreads<kKDim>;  // float4 of W per thread
  static constexpr int kSmallQuads = kChunk * kStateRows / 4;  // float4 of Uraw rows, and of P (kStateRows == kChunk)
  static_assert(kQkLoads * kStateThreads<kKDim> == kChunk * kKDim &&
                kWLoads * kStateThreads<kKDim> * 4 == kChunk * kKDim);
  static_assert(kStateRows == kChunk && 2 * kSmallQuads <= kStateThreads<kKDim>, "Uraw and P: one float4 per thread");
  __half2 kq[kQkLoads];  // k and q of one element, packed: half the registers of two __half arrays
  float4 w[kWLoads];
  float4 small;
  float g;       // threads 0..15: G of token threadIdx.x
  int count;     // the chunk's tokens; rows past them are stored as zeros

  // Threads 0..63 one float4 of Uraw (token j_small, rows 4 quad ..), 64..127 one of P (row j_small).
  __device__ __forceinline__ static int j_small() { return threadIdx.x % kSmallQuads / (kChunk / 4); }
  __device__ __forceinline__ static int quad_small() { return threadIdx.x % kSmallQuads % (kChunk / 4); }

  __device__ __forceinline__ void load(const GdnPrefillParams& p, const float* chunk_records, int64_t token_step,
                                       int first, int chunk_count, int k_head, int first_row) {
    count = chunk_count;
    const __half* q_in = static_cast<const __half*>(p.q);
    const __half* k_in = static_cast<const __half*>(p.k);
#pragma unroll
    for (int it = 0; it < kQkLoads; ++it) {
      const int i = threadIdx.x + it * kStateThreads<kKDim>, j = i / kKDim, col = i % kKDim;
      const int64_t token = first + min(j, count - 1);  // rows past the end are zeroed in store
      kq[it] = __halves2half2(k_in[token * p.k_stride + k_head * kKDim + col],
                              q_in[token * p.q_stride + k_head * kKDim + col]);
    }
#pragma unroll
    for (int it = 0; it < kWLoads; ++it) {
      const int i = threadIdx.x + it * kStateThreads<kKDim>, j = i / (kKDim / 4), quad = i % (kKDim / 4);
      w[it] = *reinterpret_cast<const float4*>(chunk_records + min(j, count - 1) * token_step + 4 * quad);
    }
    const int small_col =
        threadIdx.x < kSmallQuads ? kKDim + first_row + 4 * quad_small() : kKDim + p.v_dim + 4 * quad_small();
    small = *reinterpret_cast<const float4*>(chunk_records + min(j_small(), count - 1) * token_step + small_col);
    // Padding rows hold the last token's G, as pass 1's scan leaves them.
    g = threadIdx.x < kChunk ? chunk_records[min(int(threadIdx.x), count - 1) * token_step + kKDim + p.v_dim + kChunk]
                             : 0.f;
  }

  __device__ __forceinline__ void store(const GdnPrefillParams& p, ChunkTiles<kKDim>& t) const {
#pragma unroll
    for (int it = 0; it < kQkLoads; ++it) {
      const int i = threadIdx.x + it * kStateThreads<kKDim>, j = i / kKDim, col = i % kKDim;
      t.k[j][col] = j < count ? __low2float(kq[it]) : 0.f;
      t.q[j][col] = j < count ? __high2float(kq[it]) * p.scale : 0.f;
    }
#pragma unroll
    for (int it = 0; it < kWLoads; ++it) {
      const int i = threadIdx.x + it * kStateThreads<kKDim>, j = i / (kKDim / 4), quad = i % (kKDim / 4);
      *reinterpret_cast<float4*>(&t.w[j][4 * quad]) = j < count ? w[it] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    const float4 small_value = j_small() < count ? small : make_float4(0.f, 0.f, 0.f, 0.f);
    // Token j_small's 4 rows of Uraw, or row j_small of P, stored transposed.
    float(*transposed)[kChunk] = threadIdx.x < kSmallQuads ? t.u_t : t.p_t;
    if (threadIdx.x < 2 * kSmallQuads) {
      const int first = 4 * quad_small(), j = j_small();
      transposed[first][j] = small_value.x, transposed[first + 1][j] = small_value.y;
      transposed[first + 2][j] = small_value.z, transposed[first + 3][j] = small_value.w;
    }
    if (threadIdx.x < kChunk) t.gcum[threadIdx.x] = g;
  }
};

// Pass 2: CTA = (sequence, v-head, 16 state rows); the chunks in order, each staged from the records
// and applied to the rows. Two CTAs of 256 threads per SM at k_dim 128 (128 registers), three of 128
// at k_dim 64 (168): its CTAs each walk a whole sequence, so the grid should fit in few waves (a 27B
// TP1 prompt's 384 CTAs take 2.4 on a V100's 80 SMs).
template <int kKDim, typename State>
__global__ void __launch_bounds__(kStateThreads<kKDim>, kKDim == 128 ? 2 : 3)
    chunk_state_kernel(GdnPrefillParams p, const float* records) {
  __shared__ __align__(16) ChunkTiles<kKDim> t;
  const int n = blockIdx.x, v_head = blockIdx.y;
  const int row = threadIdx.x / kLanes<kKDim>, part = threadIdx.x % kLanes<kKDim>;
  const int first_row = blockIdx.z * kStateRows, v = first_row + row;  // v_dim % 32 == 0: every row is live
  const int k_head = v_head / (p.v_heads / p.k_heads);
  int begin, end;
  sequence_range(p, n, begin, end);
  const int64_t state_offset = (((int64_t)n * p.v_heads + v_head) * p.v_dim + v) * kKDim;
  const int64_t pitch = record_floats(kKDim, p.v_dim), token_step = p.v_heads * pitch;
  const float* head_records = records + v_head * pitch;
  float s[kColsPerLane];
  load_state_rows<kKDim, State>(p, state_offset, part, s);
  StagedChunk<kKDim> staged;
  if (begin < end) {
    staged.load(p, head_records + begin * token_step, token_step, begin, min(kChunk, end - begin), k_head, first_row);
  }
  for (int first = begin; first < end; first += kChunk) {
    __syncthreads();  // the previous chunk's tiles are no longer read
    staged.store(p, t);
    __syncthreads();
    const int next = first + kChunk;
    if (next < end) {
      staged.load(p, head_records + next * token_step, token_step, next, min(kChunk, end - next), k_head, first_row);
    }
    apply_chunk<kKDim>(p, t, row, part, v, v_head, first, min(kChunk, end - first), s);
  }
  store_state_rows<kKDim>(p, state_offset, part, s);
}

template <int kKDim>
void launch_prefill_for(const GdnPrefillParams& p, float* records, cudaStream_t stream) {
  // Every sequence's chunks fit in tokens / kChunk + seqs slots (each adds at most one partial chunk;
  // the op checks the sum fits a grid).
  const dim3 solve_grid(static_cast<unsigned>(gdn_prefill_solve_slots(p.tokens, p.seqs)), p.v_heads);
  if (p.tokens > 0) {
    chunk_solve_kernel<kKDim><<<solve_grid, kSolveThreads, 0, stream>>>(p, records);
    SM7X_CHECK_LAUNCH();
  }
  const dim3 state_grid(p.seqs, p.v_heads, p.v_dim / kStateRows);
  if (p.initial_state && !p.initial_state_fp32) {
    chunk_state_kernel<kKDim, __half><<<state_grid, kStateThreads<kKDim>, 0, stream>>>(p, records);
  } else {
    chunk_state_kernel<kKDim, float><<<state_grid, kStateThreads<kKDim>, 0, stream>>>(p, records);
  }
  SM7X_CHECK_LAUNCH();
}

}  // namespace

int64_t gdn_prefill_record_floats(int k_dim, int v_dim) { return record_floats(k_dim, v_dim); }

int64_t gdn_prefill_solve_slots(int64_t tokens, int64_t seqs) { return (tokens + kChunk - 1) / kChunk + seqs; }

void launch_gdn_chunk_prefill(const GdnPrefillParams& p, int k_dim, float* records, cudaStream_t stream) {
  if (p.seqs == 0) return;
  switch (k_dim) {
    case 64: return launch_prefill_for<64>(p, records, stream);
    case 128: return launch_prefill_for<128>(p, records, stream);
    default: break;  // the op checks k_dim first
  }
}

}  // namespace sm7x
