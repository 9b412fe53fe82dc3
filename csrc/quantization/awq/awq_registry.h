// The fused AWQ kernel's instantiations, in one place: X(token_tiles, warps, column_tiles). Both arch paths
// instantiate every entry; the cost model in awq_dispatch.cpp picks one per call. The grouped (MoE)
// launch has its own list: the caller picks token_tiles from its routed rows per expert.
//   token_tiles 1: up to 8 tokens per CTA (decode); 2: up to 16 (MTP verification, small batches).
//   warps 4 or 8: how many warps share a CTA's columns (more for long k ranges).
//   column_tiles 1 or 2: packed 16-column tiles per CTA. Every CTA loads its tokens' x over its k
//     range, so x is loaded N / (16 * column_tiles) times: from 8 tokens on those loads outweigh
//     the weights (docs/roadmap.md); two tiles halve them at half the CTAs. Measured on the H200
//     (benchmarks/results/awq_gemm-sm75-h200-2026-12-01-column-tiles.json): best in 20 of 24 cases
//     at 16-64 rows (by 1-31%); (2, 8, 2), at 145 registers one CTA per SM, never won: not built.
#pragma once

#define SM7X_AWQ_FUSED_REGISTRY(X) \
  X(1, 4, 1)                       \
  X(1, 8, 1)                       \
  X(2, 4, 1)                       \
  X(2, 8, 1)                       \
  X(1, 8, 2)                       \
  X(2, 4, 2)

// Experts are narrow (512 columns at 35B-A3B): one column tile per CTA keeps their grids full at
// decode-like sizes, the 8-row entry the MoE layer takes below 8 rows per expert. From there it takes
// the tiled kernel's grouped form (below). The 16-row entries are no longer chosen on the H200's
// measurements; they stay for benchmarks/moe.py --grouped-configs on the real cards. 32-row tiles of
// this kernel (4, 4, 1) were 1.08-1.68x slower than its 16-row form and are not built.
#define SM7X_AWQ_GROUPED_REGISTRY(X) \
  X(1, 4, 1)                         \
  X(2, 4, 1)                         \
  X(2, 4, 2)

// The tiled kernel's instantiations (awq_tiled_kernel.cuh): X(token_tiles, warps). 32 tokens per CTA
// read each weight once; each warp owns one column tile, so 8 warps give a CTA 128 columns and load
// each x block once for all of them. 64 tokens per CTA, (8, 8), at 156 registers (one CTA per SM on
// sm_75), took 1.08-1.88x the time of (4, 8) at 16-256 rows of the 27B layers (H200, sm75 path,
// benchmarks/results/awq_gemm-sm75-h200-2026-12-02-kernels.json): not built.
#define SM7X_AWQ_TILED_REGISTRY(X) \
  X(4, 8)

// The tiled kernel's grouped (MoE) form: X(token_tiles, warps), a CTA taking 8 x token_tiles rows of
// one expert and `warps` column tiles (one per warp). In grouped_registry() it appears as
// (token_tiles, warps, column_tiles = warps): rows and column tiles per CTA name it. The MoE layer takes
// it from 8 rows per expert (ops/moe.py, TILED_MIN_ROWS_PER_EXPERT, with the measurements).
#define SM7X_AWQ_GROUPED_TILED_REGISTRY(X) \
  X(4, 8)
