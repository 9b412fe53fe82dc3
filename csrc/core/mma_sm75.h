// Turing tensor-core MMA (HMMA.1688) and ldmatrix. Legal on sm_75 and later, never on sm_70:
// include this header only from Sm75-path translation units (*_sm75.cu).
#pragma once
#include <cstdint>

namespace sm7x::sm75 {

// m16n8k8 fragments use groups of four lanes: group = lane / 4 picks the row (A, C) or the
// column (B); the lane within the group picks a pair of adjacent elements.
__device__ __forceinline__ int group(int lane) { return lane >> 2; }
__device__ __forceinline__ int pair_offset(int lane) { return (lane & 3) * 2; }

// d = a * b + d: A 16x8 row-major (a[0] rows 0-7, a[1] rows 8-15), B 8x8 column-major, fp32 accumulate.
// d[0..1]: row group, cols pair_offset..+1; d[2..3]: row group + 8.
__device__ __forceinline__ void mma_m16n8k8(float (&d)[4], const uint32_t (&a)[2], uint32_t b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(b));
}

// Loads two 8x8 b16 matrices from shared memory: lanes 0-7 give the row addresses of the first,
// lanes 8-15 of the second (16-byte aligned); r[j] receives row lane/4, cols pair_offset of matrix j.
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

}  // namespace sm7x::sm75
