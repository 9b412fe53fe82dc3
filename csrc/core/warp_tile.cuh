// A warp's 16x16 fp32 accumulator tile fed from shared memory, one k8 step at a time. The
// specialisations (warp_tile_sm70.cuh, warp_tile_sm75.cuh) are the only code that knows an arch's
// mma fragment layout; kernels call mma() and for_each() and stay arch-agnostic.
#pragma once
#include <cuda_fp16.h>

#include "core/arch.h"

namespace sm7x {

constexpr int kWarpTileM = 16;
constexpr int kWarpTileN = 16;
constexpr int kWarpTileK = 8;

// mma(a, lda, bt, ldb, lane): acc += A[16 x 8] * Bt[16 x 8]^T, where A and Bt are row-major in
// shared memory (row strides in halves; rows 16-byte aligned). for_each(lane, f) calls
// f(row, col, value) for the elements this lane holds; value is the element itself (float&), so f may
// update it (e.g. rescale rows).
template <class ArchTag>
struct WarpTile16x16;

}  // namespace sm7x
