// Device side of the KV cache formats (kv_format.h): kernels read and write 8 elements at a time as
// 8 halves, so only these loads and stores know the storage. Arch-neutral (byte permutes, no FP8
// instructions): the same code runs on Volta, Turing and the H100 used for emulation.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "paged_kv/kv_format.h"

namespace flash_v100 {

struct KvFloat16 {
  using Element = __half;
  static constexpr KvFormat kFormat = KvFormat::kFloat16;
  static __device__ __forceinline__ uint4 load8(const Element* src) { return *reinterpret_cast<const uint4*>(src); }
  // The scale belongs to quantized caches; an fp16 cache stores the value itself.
  static __device__ __forceinline__ void store8(Element* dst, uint4 halves, float) {
    *reinterpret_cast<uint4*>(dst) = halves;
  }
  static __device__ __forceinline__ void store1(Element* dst, __half h, float) { *dst = h; }
};

// Largest finite E5M2 value (0x7B: exponent 30, mantissa 0b11).
constexpr float kE5m2Max = 57344.f;

// value / scale -> E5M2: saturate (inf too), then round to nearest even once: truncate to fp16 with
// a sticky bit for what the truncation dropped, then round on the dropped low byte (fp16 and E5M2
// share sign, exponent and bias). NaN stays NaN.
__device__ __forceinline__ uint8_t float_to_e5m2(float value) {
  if (fabsf(value) > kE5m2Max) value = copysignf(kE5m2Max, value);  // false for NaN
  const __half truncated = __float2half_rz(value);
  const uint16_t bits = __half_as_ushort(truncated) | (__half2float(truncated) != value);
  if ((bits & 0x7fff) > 0x7c00) return static_cast<uint8_t>((bits >> 8) | 0x02);  // NaN: keep a mantissa bit
  return static_cast<uint8_t>((bits + 0x7f + ((bits >> 8) & 1)) >> 8);
}

struct KvFp8E5m2 {
  using Element = uint8_t;
  static constexpr KvFormat kFormat = KvFormat::kFp8E5m2;
  // Byte i becomes the high byte of half i (PRMT: a zero byte from the second operand, then it).
  static __device__ __forceinline__ uint4 load8(const Element* src) {
    const uint2 bytes = *reinterpret_cast<const uint2*>(src);
    return make_uint4(__byte_perm(bytes.x, 0, 0x1404), __byte_perm(bytes.x, 0, 0x3424),
                      __byte_perm(bytes.y, 0, 0x1404), __byte_perm(bytes.y, 0, 0x3424));
  }
  static __device__ __forceinline__ void store8(Element* dst, uint4 halves, float scale) {
    const __half* h = reinterpret_cast<const __half*>(&halves);
    uint32_t word[2];
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      word[w] = 0;
#pragma unroll
      for (int i = 0; i < 4; ++i) word[w] |= uint32_t(float_to_e5m2(__half2float(h[4 * w + i]) / scale)) << (8 * i);
    }
    *reinterpret_cast<uint2*>(dst) = make_uint2(word[0], word[1]);
  }
  static __device__ __forceinline__ void store1(Element* dst, __half h, float scale) {
    *dst = float_to_e5m2(__half2float(h) / scale);
  }
};

// Calls fn(KvFloat16{}) or fn(KvFp8E5m2{}) for a runtime format (host dispatch of kernel templates).
template <class Fn>
void dispatch_kv_format(KvFormat format, Fn&& fn) {
  if (format == KvFormat::kFp8E5m2) {
    fn(KvFp8E5m2{});
  } else {
    fn(KvFloat16{});
  }
}

}  // namespace flash_v100
