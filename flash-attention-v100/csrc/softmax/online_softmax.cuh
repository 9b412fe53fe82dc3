// One query row's online softmax (fp32) over tiles of keys, for the tensor-core prefill and decode
// kernels: a row's scores of a tile are spread over kLanes consecutive lanes (a power of two), kCols per
// lane; the lanes of a row keep identical copies of its running max and sum.
#pragma once
#include <cuda_fp16.h>

#include <cmath>

namespace flash_v100 {

template <int kLanes>
struct OnlineSoftmaxRow {
  float m = -INFINITY;  // running max of the row's visible scores
  float l = 0.f;        // running sum of exp(score - m)

  // One tile: score(c) gives this lane's score in column c < kCols, -INFINITY where the key is not
  // visible. Writes exp(score - new max) as fp16 to p[0 .. kCols) and returns the factor that rescales
  // the row's output so far.
  template <int kCols, class Score>
  __device__ __forceinline__ float step(Score&& score, __half* p) {
    float x[kCols], tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      x[c] = score(c);
      tile_max = fmaxf(tile_max, x[c]);
    }
#pragma unroll
    for (int offset = 1; offset < kLanes; offset *= 2) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
    }
    const float m_new = fmaxf(m, tile_max);
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      // A row with nothing visible yet keeps m = -inf, p = 0 and its zero sums (no inf - inf).
      const float prob = m_new == -INFINITY ? 0.f : __expf(x[c] - m_new);
      sum += prob;
      p[c] = __float2half_rn(prob);
    }
#pragma unroll
    for (int offset = 1; offset < kLanes; offset *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const float rescale = m == -INFINITY ? 0.f : __expf(m - m_new);
    l = l * rescale + sum;
    m = m_new;
    return rescale;
  }

  // The row's final output factor (v_scale / sum) and log-sum-exp; 0 and -inf for a row that saw no key.
  __device__ __forceinline__ float out_scale(float v_scale) const { return l > 0.f ? v_scale / l : 0.f; }
  __device__ __forceinline__ float lse() const { return l > 0.f ? m + __logf(l) : -INFINITY; }
};

}  // namespace flash_v100
