// The AWQ expert layer for a few tokens (decode, MTP verification at batch 1): out[t] = sum over
// slots j of weights[t, j] * down(silu(gate) * up)(x[t]) with expert ids[t, j], in two launches and
// without sorting the routed rows:
//   1. gate/up + SiLU gate: a CTA per (routed row, 16 columns of the expert width) reads those
//      columns of its expert's gate and up projections and writes 16 values of act [rows, I];
//   2. down + weighted sum: a CTA per (token, 16 output columns) reads those columns of each of
//      the token's experts' down projections and writes out [tokens, H] once (no atomics, a fixed
//      order: deterministic).
// SIMT dot products over the same packed tiles the tensor-core kernels read (awq_gemm.h): with one
// token per row there is nothing for an mma to share, and the same code serves every arch >= 7.0.
// Slots of ids outside [0, experts) (other ranks' experts) are skipped.
// With router logits given, launch 1 also routes: each CTA picks its token's top-k from the logits
// (the routing kernel's warp code, topk_softmax_warp.cuh: the same picks bit for bit) and the CTAs of
// column tile 0 write ids and weights for launch 2, so routing costs no launch of its own (a decode
// layer's fixed cost is its launches: benchmarks.md, "One token's fixed cost"). Where launch 1 takes
// more than one wave, the routing kernel runs first instead (the launcher decides; same picks).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "moe/moe_routing.h"

namespace sm7x {

struct AwqMoeDecodeParams {
  const __half* x;           // [tokens, hidden]
  const uint4* w13;          // [experts] packed tiles of hidden -> 2 * inter (gate, then up)
  const __half2* w13_sz;     // [experts, hidden / group, 2 * inter]
  const uint4* w2;           // [experts] packed tiles of inter -> hidden
  const __half2* w2_sz;      // [experts, inter / group, hidden]
  int64_t w13_stride, w13_sz_stride, w2_stride, w2_sz_stride;  // per expert, in uint4 / half2
  float* weights;            // [tokens, k]: read, or written by launch 1 when it routes
  int* ids;                  // [tokens, k]: read, or written by launch 1 when it routes
  const void* router_logits; // [tokens, experts] (row stride logits_stride), or null: ids and weights given
  int64_t logits_stride;
  GatingDtype logits_dtype;
  bool renormalize;          // routing: weights renormalised over the k picks
  __half* act;               // [tokens * k, inter]: silu(gate) * up per routed row
  __half* out;               // [tokens, hidden]
  int tokens, k, experts, hidden, inter, group_shift;
};

// hidden and inter multiples of 32 (the AWQ group), inter also of 16 (checked by the op).
void launch_awq_moe_decode(const AwqMoeDecodeParams& params, cudaStream_t stream);

}  // namespace sm7x
