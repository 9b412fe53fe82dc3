// Gated DeltaNet (Qwen3.5/3.6, Qwen3-Next linear-attention layers) for decode steps: one new token per
// sequence, or a few (MTP verification: 1 + k draft tokens, the state saved after each), in vLLM
// 0.26's layouts:
//  - conv state per block: [dim, state_len] views with any strides (vLLM's default stores them
//    transposed, dim fastest); block 0 (vLLM's null block) is skipped;
//  - recurrent state per block: [v_heads, head_v_dim, head_k_dim] contiguous (k fastest), fp32 or fp16;
//    a block index <= 0 leaves the state alone and writes zeros.
// Sequences: with cu_seqlens, sequence n is tokens cu_seqlens[n] .. cu_seqlens[n+1]-1 (empty ones,
// CUDA-graph padding, are skipped); without, token n is sequence n. state_indices[n][t] is the block
// that receives the state after token t; with num_accepted (MTP), the state is read from column
// num_accepted[n] - 1 (the last accepted draft), else from column 0. Bad device-side values cannot
// fault: a sequence longer than the row of state_indices is cut to it, num_accepted is clamped into it.
// SIMT: per token the work is a rank-1 update of a 128 x 128 state per head, bound by the state's bytes.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sm7x {

struct GdnSequences {
  const int* cu_seqlens;     // [seqs + 1] or null (one token per sequence)
  const int* num_accepted;   // [seqs] or null (read the state from column 0)
  const int* state_indices;  // [seqs, indices_stride]
  int64_t indices_stride;
  int seqs;
  int positions;             // columns of state_indices: the most tokens a sequence may have
};

struct GdnConvUpdateParams {
  GdnSequences seq;
  __half* x;                 // [tokens, dim] (row stride x_stride): input, overwritten with the output
  __half* conv_state;
  const __half* weight;      // [dim, width] contiguous
  const __half* bias;        // [dim] or null
  int64_t x_stride;
  int64_t state_block_stride, state_dim_stride, state_pos_stride;
  int dim, width;
  bool silu;
};

struct GdnRecurrentParams {
  GdnSequences seq;
  const __half* qkv;         // [tokens, 2 * k_heads * k_dim + v_heads * v_dim] (row stride), after the conv
  const __half* a;           // [tokens, v_heads] (row stride a_stride): decay input
  const __half* b;           // [tokens, v_heads] (row stride b_stride): beta input
  const float* a_log;        // [v_heads]
  const __half* dt_bias;     // [v_heads]
  void* state;               // [blocks, v_heads, v_dim, k_dim], block stride state_block_stride
  __half* out;               // [tokens, v_heads, v_dim] contiguous
  int64_t qkv_stride, a_stride, b_stride, state_block_stride;
  int k_heads, v_heads, v_dim;
  float scale;               // applied to the l2-normalised q
  bool state_fp32;
  bool round_beta;           // vLLM's single-token decode kernel rounds beta to fp16; its MTP kernel does not
};

void launch_gdn_conv_update(const GdnConvUpdateParams& params, cudaStream_t stream);
// k_dim 64, 128 or 256 (checked by the op).
void launch_gdn_recurrent(const GdnRecurrentParams& params, int k_dim, cudaStream_t stream);

}  // namespace sm7x
