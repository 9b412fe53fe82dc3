// Causal conv1d over whole prompts for Gated DeltaNet prefill (vLLM's causal_conv1d_fn as the Qwen3.5/3.6
// layers call it): sequence n is tokens query_start_loc[n] .. query_start_loc[n+1]-1 of x; its window
// starts from conv_state[cache_indices[n][0]] where has_initial_state[n] (else zeros), and that state
// becomes the sequence's last width - 1 inputs. Sequences whose cache index is pad_slot_id or
// null_block_id (vLLM's padding) are skipped: their output is left unwritten, as vLLM's kernel leaves it.
//   out[d, t] = act(bias[d] + sum_j weight[d, j] * input(t - (width - 1) + j))
// Every output is independent (each thread: one or two channels, 16 tokens), so a prompt runs in parallel
// over its tokens; the states are written by a second launch, after every window has read them.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sm7x {

struct GdnConvPrefillParams {
  const __half* x;            // [dim, tokens], any strides (vLLM passes mixed_qkv transposed)
  __half* out;                // [dim, tokens], any strides
  __half* conv_state;         // [blocks, dim, >= width - 1], any strides
  const __half* weight;       // [dim, width] contiguous
  const __half* bias;         // [dim] or null
  const int* query_start_loc; // [seqs + 1]
  const int* cache_indices;   // [seqs] or [seqs, k], any strides (column 0 is used; row stride indices_stride), or null
                              // (sequence n uses block n)
  const bool* has_initial_state;  // [seqs] or null (none has one)
  int64_t x_dim_stride, x_token_stride, out_dim_stride, out_token_stride;
  int64_t state_block_stride, state_dim_stride, state_pos_stride, indices_stride;
  int seqs, tokens, dim, width, pad_slot_id, null_block_id;
  bool silu;
};

// width 1 .. 8 (checked by the op).
void launch_gdn_conv_prefill(const GdnConvPrefillParams& params, cudaStream_t stream);

}  // namespace sm7x
