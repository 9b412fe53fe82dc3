// Volta tensor-core MMA (HMMA.884). Legal on sm_70 and every later arch.
#pragma once
#include <cstdint>

namespace sm7x::sm70 {

// One warp runs four independent 8x8x4 products, one per quad pair: quad pair q is made of lanes
// 4q..4q+3 (rows 0-3 of its tile) and 4q+16..4q+19 (rows 4-7).
__device__ __forceinline__ int quad_pair(int lane) { return (lane >> 2) & 3; }

// Row-major A fragment: this lane's row; it holds k = 0..3 of that row as two half2.
__device__ __forceinline__ int a_row(int lane) { return (lane & 3) + ((lane >> 4) << 2); }
// Column-major B fragment: this lane's column; it holds k = 0..3 of that column as two half2.
__device__ __forceinline__ int b_col(int lane) { return (lane & 3) + ((lane >> 4) << 2); }
// f32 accumulator element i (0..7) of this lane.
__device__ __forceinline__ int c_row(int lane, int i) { return (lane & 1) + (i & 2) + ((lane >> 4) << 2); }
__device__ __forceinline__ int c_col(int lane, int i) { return (i & 4) + (lane & 2) + (i & 1); }

// d = a * b + d, fp16 inputs, fp32 accumulate.
__device__ __forceinline__ void mma_m8n8k4(float (&d)[8], const uint32_t (&a)[2], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m8n8k4.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9}, {%10,%11}, {%0,%1,%2,%3,%4,%5,%6,%7};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "r"(a[0]), "r"(a[1]), "r"(b[0]), "r"(b[1]));
}

}  // namespace sm7x::sm70
