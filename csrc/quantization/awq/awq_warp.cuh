// A warp's share of the fused AWQ kernel: one packed tile (16 columns x 128 k) times up to
// 8 * kTokenTiles tokens. Weights are the mma's A operand (16 or 8 rows of n), tokens its B
// operand (8 columns), so a decode step wastes no tensor-core rows on padding tokens.
//
// The specialisations (awq_warp_sm70.cuh, awq_warp_sm75.cuh) are the only code that knows an
// arch's fragment layout. Interface:
//   slot(lane)        which 16-byte slot of each packed tile half this lane loads (awq_gemm.h)
//   x_token(lane)     which token of each 8-token block this lane loads x for; its k segment is
//                     slot(lane) % 4, the same 32 k its weight slot holds
//   x_lane(j, seg)    the lane that loads token j's k segment seg (inverse of x_token and slot % 4)
//   tile(w, sz, x)    acc += dequant(w) * x for one packed tile: w[h] the lane's slot of half h,
//                     sz[h] its {scale, -zero*scale}, x(t, v) the lane's 8 halves of token block t
//                     (k = 8v..8v+7 of its segment), called once per (t, v)
//   finish(lane)      combine partial sums held by other lanes (Volta quad pairs)
//   for_each(lane, f) f(row 0..15, token 0..8*kTokenTiles-1, value) for each result this lane owns
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "core/arch.h"
#include "core/int4.cuh"

namespace sm7x::awq {

template <class ArchTag, int kTokenTiles>
struct AwqWarp;

__device__ __forceinline__ uint32_t bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

}  // namespace sm7x::awq
