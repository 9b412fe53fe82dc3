// Four consecutive recurrent-state columns in registers as fp32, from and to fp32 (16 bytes) or fp16
// (8 bytes) state: the GDN kernels move the state in these vectors so a warp's accesses cover whole
// sectors (the ops check the alignment).
#pragma once
#include <cuda_fp16.h>

namespace sm7x {

__device__ __forceinline__ void load4(const float* src, float* x) {
  const float4 v = *reinterpret_cast<const float4*>(src);
  x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
}
__device__ __forceinline__ void load4(const __half* src, float* x) {
  const uint2 v = *reinterpret_cast<const uint2*>(src);
  const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&v.x));
  const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&v.y));
  x[0] = lo.x, x[1] = lo.y, x[2] = hi.x, x[3] = hi.y;
}
__device__ __forceinline__ void store4(float* dst, const float* x) {
  *reinterpret_cast<float4*>(dst) = make_float4(x[0], x[1], x[2], x[3]);
}
__device__ __forceinline__ void store4(__half* dst, const float* x) {
  const __half2 lo = __floats2half2_rn(x[0], x[1]), hi = __floats2half2_rn(x[2], x[3]);
  uint2 v;
  v.x = *reinterpret_cast<const unsigned*>(&lo);
  v.y = *reinterpret_cast<const unsigned*>(&hi);
  *reinterpret_cast<uint2*>(dst) = v;
}

}  // namespace sm7x
