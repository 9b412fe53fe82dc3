// int4 -> fp16 without per-element shifts or conversions (legal on every arch >= sm_70).
//
// A packed word holds 8 consecutive k of one output column, nibble positions (0,4,1,5,2,6,3,7) for
// k = 0..7 (the same order AWQ uses across columns, so repacking is a transpose). OR-ing a nibble at
// bits 0-3 into 1024.0 (0x6400, ulp 1) gives 1024 + q exactly; a nibble at bits 4-7 into 64.0
// (0x5400, ulp 1/16) gives 64 + q exactly. One subtraction then recovers q in fp16.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace sm7x {

// Component i of a 16-byte vector (i is a compile-time constant in unrolled loops).
__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return reinterpret_cast<const uint32_t*>(&v)[i]; }

// (a & mask) | bits in one instruction.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t out;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(out) : "r"(a), "r"(mask), "r"(bits));
  return out;
}

__device__ __forceinline__ __half2 as_half2(uint32_t bits) { return *reinterpret_cast<__half2*>(&bits); }

// w[j] = {w(k=2j), w(k=2j+1)} = q * scale + (-zero * scale), with scale_zero = {scale, -zero*scale}:
// per pair one lop3, one exact subtraction of the magic number and one HFMA.
__device__ __forceinline__ void dequant_int4x8(uint32_t q, __half2 scale_zero, __half2 (&w)[4]) {
  constexpr uint32_t kMagicLow = 0x64006400;   // {1024, 1024}: nibbles at bits 0-3 of each half
  constexpr uint32_t kMagicHigh = 0x54005400;  // {64, 64}: nibbles at bits 4-7 of each half
  const __half2 magic_low = as_half2(kMagicLow), magic_high = as_half2(kMagicHigh);
  const __half2 scale = __low2half2(scale_zero);
  const __half2 bias = __high2half2(scale_zero);
  const uint32_t q_hi = q >> 8;
  w[0] = __hfma2(__hsub2(as_half2(and_or(q, 0x000f000f, kMagicLow)), magic_low), scale, bias);       // k0, k1
  w[1] = __hfma2(__hsub2(as_half2(and_or(q, 0x00f000f0, kMagicHigh)), magic_high), scale, bias);     // k2, k3
  w[2] = __hfma2(__hsub2(as_half2(and_or(q_hi, 0x000f000f, kMagicLow)), magic_low), scale, bias);    // k4, k5
  w[3] = __hfma2(__hsub2(as_half2(and_or(q_hi, 0x00f000f0, kMagicHigh)), magic_high), scale, bias);  // k6, k7
}

}  // namespace sm7x
