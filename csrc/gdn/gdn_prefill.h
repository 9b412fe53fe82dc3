// Gated DeltaNet prefill (Qwen3.5/3.6 linear-attention layers), chunked: what vLLM's
// chunk_gated_delta_rule (FLA Triton) computes, for variable-length batches, in its layouts:
//  - q, k [tokens, k_heads, k_dim] and v [tokens, v_heads, v_dim] fp16 (rows of any stride, heads
//    contiguous), q and k already l2-normalised; g (log decay) and beta [tokens, v_heads] fp32;
//  - sequence n is tokens cu_seqlens[n] .. cu_seqlens[n+1]-1; its state starts from
//    initial_state[n] (or zeros) and ends in final_state[n], [v_heads, v_dim, k_dim] fp32 (k fastest);
//  - out [tokens, v_heads, v_dim] fp16; v-head h reads k-head h / (v_heads / k_heads).
// Per v-head, with state S [v_dim, k_dim]: S_t = exp(g_t) S_{t-1} + beta_t (v_t - exp(g_t) S_{t-1} k_t) k_t^T,
// o_t = scale * S_t q_t. SIMT, chunk by chunk (see gdn_prefill.cu for the chunk algebra).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace sm7x {

struct GdnPrefillParams {
  const void* q;              // __half
  const void* k;
  const void* v;
  const float* g;
  const float* beta;
  const int* cu_seqlens;      // [seqs + 1]
  const void* initial_state;  // [seqs, v_heads, v_dim, k_dim] fp32 or fp16, or null (zeros)
  float* final_state;         // [seqs, v_heads, v_dim, k_dim]
  void* out;                  // __half [tokens, v_heads, v_dim]
  int64_t q_stride, k_stride, v_stride, g_stride, beta_stride;  // token strides, in elements
  int tokens, seqs, k_heads, v_heads, v_dim;
  float scale;
  bool initial_state_fp32;
};

// k_dim 64 or 128 and v_dim % 32 == 0 (checked by the op). records: the workspace that carries each
// solved chunk from the first pass to the second (see gdn_prefill.cu), 16-byte aligned,
// tokens * v_heads * gdn_prefill_record_floats(k_dim, v_dim) floats; the first pass launches
// gdn_prefill_solve_slots(tokens, seqs) CTAs per v-head (at most 2^31 - 1). cu_seqlens must not
// decrease: overlapping sequences give undefined (never out-of-bounds) results.
void launch_gdn_chunk_prefill(const GdnPrefillParams& params, int k_dim, float* records, cudaStream_t stream);
int64_t gdn_prefill_record_floats(int k_dim, int v_dim);
int64_t gdn_prefill_solve_slots(int64_t tokens, int64_t seqs);

}  // namespace sm7x
