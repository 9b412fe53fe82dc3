// The fused AWQ kernel's instantiations, in one place: X(token_tiles, warps). Both arch paths
// instantiate every entry; the cost model in awq_dispatch.cpp picks one per call. The grouped (MoE)
// launch has its own list: the caller picks token_tiles from its routed rows per expert.
//   token_tiles 1: up to 8 tokens per CTA (decode); 2: up to 16 (MTP verification, small batches).
//   warps 4 or 8: how many warps share a CTA's columns (more for long k ranges).
#pragma once

#define SM7X_AWQ_FUSED_REGISTRY(X) \
  X(1, 4)                          \
  X(1, 8)                          \
  X(2, 4)                          \
  X(2, 8)

#define SM7X_AWQ_GROUPED_REGISTRY(X) \
  X(1, 4)                            \
  X(2, 4)
