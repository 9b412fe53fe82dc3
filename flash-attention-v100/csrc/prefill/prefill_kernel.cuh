// Tensor-core prefill attention (FlashAttention-2 forward), arch-generic over core/warp_tile.cuh:
// the only arch-specific code is WarpTile16x16<ArchTag> (m8n8k4 quad pairs on Volta, m16n8k8 +
// ldmatrix on Turing), so both paths share this file.
//
// CTA = 64 query positions of one query head of one sequence (4 warps x 16 rows); sequences with
// fewer than kPrefillMinQueryLen queries are left to the SIMT kernel, which runs in the same op. Per 16-key tile:
// K (row = key) and V^T (row = dimension) go to shared memory; each warp computes its 16x16 scores
// S = Q K^T with one WarpTile16x16 over head_dim, parks them in shared memory, runs the online
// softmax there (two lanes per row, fp32), writes P in fp16 and the rows' rescale factors, rescales
// its O tiles (head_dim/16 WarpTile16x16s kept in registers) and accumulates O += P V.
#pragma once
#include <cmath>
#include <stdexcept>

#include "core/cuda_check.h"
#include "core/warp_tile.cuh"
#include "paged_kv/read_kv.cuh"
#include "prefill/prefill_attention.h"
#include "softmax/online_softmax.cuh"

namespace flash_v100 {

constexpr int kPrefillWarps = kPrefillRowsPerCta / 16;
constexpr int kPrefillThreads = kPrefillWarps * 32;
constexpr int kPad = 8;  // halves: rows stay 16-byte aligned and shift banks

template <int kHeadDim>
struct PrefillSmem {
  static constexpr int kQStride = kHeadDim + kPad;
  static constexpr int kKStride = kHeadDim + kPad;
  static constexpr int kVtStride = kPrefillTileKeys + kPad;
  static constexpr int kSStride = kPrefillTileKeys + 1;
  static constexpr int kPStride = kPrefillTileKeys + kPad;
  static constexpr int kQBytes = kPrefillRowsPerCta * kQStride * 2;
  static constexpr int kKBytes = kPrefillTileKeys * kKStride * 2;
  static constexpr int kVtBytes = kHeadDim * kVtStride * 2;
  static constexpr int kSBytes = kPrefillRowsPerCta * kSStride * 4;
  static constexpr int kPBytes = kPrefillRowsPerCta * kPStride * 2;
  static constexpr int kRowBytes = kPrefillRowsPerCta * 4;  // rescale factor per row
  static constexpr int kBytes = kQBytes + kKBytes + kVtBytes + kSBytes + kPBytes + kRowBytes;
};

template <class ArchTag, int kHeadDim, class Kv>
__global__ void __launch_bounds__(kPrefillThreads) prefill_kernel(const DecodeParams p) {
  using Smem = PrefillSmem<kHeadDim>;
  using Tile = sm7x::WarpTile16x16<ArchTag>;
  constexpr int kOTiles = kHeadDim / 16;
  extern __shared__ __align__(16) unsigned char smem[];
  __half* q_s = reinterpret_cast<__half*>(smem);
  __half* k_s = reinterpret_cast<__half*>(smem + Smem::kQBytes);
  __half* vt_s = reinterpret_cast<__half*>(smem + Smem::kQBytes + Smem::kKBytes);
  float* s_s = reinterpret_cast<float*>(smem + Smem::kQBytes + Smem::kKBytes + Smem::kVtBytes);
  __half* p_s = reinterpret_cast<__half*>(smem + Smem::kQBytes + Smem::kKBytes + Smem::kVtBytes + Smem::kSBytes);
  float* rescale_s = reinterpret_cast<float*>(smem + Smem::kBytes - Smem::kRowBytes);

  // grid.x = sequence x row block, grid.y = query head.
  const int row_blocks = (p.max_q_len + kPrefillRowsPerCta - 1) / kPrefillRowsPerCta;
  const int b = blockIdx.x / row_blocks, row_block = blockIdx.x % row_blocks, head = blockIdx.y;
  const int q_begin = p.cu_seqlens_q[b], q_len = p.cu_seqlens_q[b + 1] - q_begin;
  const int m0 = row_block * kPrefillRowsPerCta;
  if (m0 >= q_len || q_len < kPrefillMinQueryLen) return;  // uniform per CTA; short blocks: SIMT kernel
  const int kv_head = head / (p.q_heads / p.kv_heads);
  const int keys = min(p.seqlens_k[b], p.max_keys);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  // Q rows m0 .. m0+63 (zeros past q_len).
  for (int i = threadIdx.x; i < kPrefillRowsPerCta * (kHeadDim / 8); i += kPrefillThreads) {
    const int row = i / (kHeadDim / 8), vec = i % (kHeadDim / 8);
    uint4 v = make_uint4(0, 0, 0, 0);
    if (m0 + row < q_len) {
      v = reinterpret_cast<const uint4*>(p.q + (int64_t)(q_begin + m0 + row) * p.q_token_stride +
                                         head * p.q_head_stride)[vec];
    }
    *reinterpret_cast<uint4*>(q_s + row * Smem::kQStride + vec * 8) = v;
  }

  // Keys this CTA can see: up to its last query's position (causal), from its first query's window.
  const int last_pos = keys - q_len + min(q_len, m0 + kPrefillRowsPerCta) - 1;
  const int key_end = p.causal ? min(keys, last_pos + 1) : keys;
  const int key_begin = p.window_left >= 0 ? max(0, keys - q_len + m0 - p.window_left) : 0;

  // This lane's softmax rows (two lanes per row of the warp's 16): row r_local, columns c0 .. c0+7.
  const int softmax_row = warp * 16 + lane / 2, softmax_col0 = (lane % 2) * 8;
  const int q_pos = keys - q_len + m0 + softmax_row;
  const bool row_valid = m0 + softmax_row < q_len;
  OnlineSoftmaxRow<2> softmax;

  Tile o[kOTiles];
  for (int k0 = key_begin / kPrefillTileKeys * kPrefillTileKeys; k0 < key_end; k0 += kPrefillTileKeys) {
    __syncthreads();  // previous tile consumed (and Q stored, first time)
    // Key is the fast index: the transposed V stores of a warp then spread over the banks.
    for (int i = threadIdx.x; i < kPrefillTileKeys * (kHeadDim / 8); i += kPrefillThreads) {
      const int key = i % kPrefillTileKeys, vec = i / kPrefillTileKeys, t = k0 + key;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (t < keys) read_kv_vec<Kv>(p, b, kv_head, t, vec, kv, vv);
      *reinterpret_cast<uint4*>(k_s + key * Smem::kKStride + vec * 8) = kv;
      const __half* v8 = reinterpret_cast<const __half*>(&vv);
#pragma unroll
      for (int e = 0; e < 8; ++e) vt_s[(vec * 8 + e) * Smem::kVtStride + key] = v8[e];
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows x 16 keys.
    Tile s;
#pragma unroll
    for (int kk = 0; kk < kHeadDim; kk += sm7x::kWarpTileK) {
      s.mma(q_s + warp * 16 * Smem::kQStride + kk, Smem::kQStride, k_s + kk, Smem::kKStride, lane);
    }
    s.for_each(lane, [&](int r, int c, float& v) { s_s[(warp * 16 + r) * Smem::kSStride + c] = v; });
    __syncwarp();

    // Online softmax over the tile: lanes 2r and 2r+1 share row r.
    const float rescale = softmax.step<8>(
        [&](int c) {
          const int t = k0 + softmax_col0 + c;
          float v = s_s[softmax_row * Smem::kSStride + softmax_col0 + c] * p.scale;
          if (p.softcap > 0.f) v = p.softcap * tanhf(v / p.softcap);
          const bool visible = row_valid && t < keys && t >= key_begin && (!p.causal || t <= q_pos) &&
                               (p.window_left < 0 || t >= q_pos - p.window_left);
          return visible ? v : -INFINITY;
        },
        p_s + softmax_row * Smem::kPStride + softmax_col0);
    if (lane % 2 == 0) rescale_s[softmax_row] = rescale;
    __syncwarp();

    // O = O * rescale + P V.
#pragma unroll
    for (int j = 0; j < kOTiles; ++j) {
      o[j].for_each(lane, [&](int r, int, float& v) { v *= rescale_s[warp * 16 + r]; });
#pragma unroll
      for (int kk = 0; kk < kPrefillTileKeys; kk += sm7x::kWarpTileK) {
        o[j].mma(p_s + warp * 16 * Smem::kPStride + kk, Smem::kPStride, vt_s + j * 16 * Smem::kVtStride + kk,
                 Smem::kVtStride, lane);
      }
    }
  }

  // out = O / l (zeros and lse -inf for a row that saw no key).
  __syncwarp();  // every lane has finished reading the last tile's rescale factors
  if (lane % 2 == 0) rescale_s[softmax_row] = softmax.out_scale(p.v_scale);
  if (lane % 2 == 0 && row_valid) {
    p.lse[(int64_t)head * p.total_q + q_begin + m0 + softmax_row] = softmax.lse();
  }
  __syncwarp();
#pragma unroll
  for (int j = 0; j < kOTiles; ++j) {
    o[j].for_each(lane, [&](int r, int c, float& v) {
      const int row = m0 + warp * 16 + r;
      if (row < q_len) {
        p.out[((int64_t)(q_begin + row) * p.q_heads + head) * kHeadDim + j * 16 + c] =
            __float2half_rn(v * rescale_s[warp * 16 + r]);
      }
    });
  }
}

template <class ArchTag, int kHeadDim>
void launch_prefill_for(const DecodeParams& p, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  constexpr int bytes = PrefillSmem<kHeadDim>::kBytes;
  static_assert(bytes <= ArchTag::kMaxSharedBytesPerBlock, "prefill tile exceeds the emulated card's shared memory");
  const int row_blocks = (p.max_q_len + kPrefillRowsPerCta - 1) / kPrefillRowsPerCta;
  const dim3 grid(p.batch * row_blocks, p.q_heads);
  dispatch_kv_format(p.kv_format, [&](auto kv) {
    const auto kernel = prefill_kernel<ArchTag, kHeadDim, decltype(kv)>;
    // Under emulation, unused shared memory beyond the tile's holds this GPU to the card's CTAs per SM.
    const int launch_bytes =
        bytes + sm7x::emulated_occupancy_padding(emulated, reinterpret_cast<const void*>(kernel), kPrefillThreads, bytes);
    if (launch_bytes > 48 * 1024) {  // an opt-in per device; cheap, so on every launch (any GPU of the process)
      SM7X_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, launch_bytes));
    }
    kernel<<<grid, kPrefillThreads, launch_bytes, stream>>>(p);
    SM7X_CHECK_LAUNCH();
  });
}

template <class ArchTag>
void launch_prefill_impl(const DecodeParams& p, int head_dim, const sm7x::CardLimits* emulated, cudaStream_t stream) {
  if (p.batch == 0 || p.total_q == 0 || p.max_q_len == 0) return;
  switch (head_dim) {
    case 64: return launch_prefill_for<ArchTag, 64>(p, emulated, stream);
    case 128: return launch_prefill_for<ArchTag, 128>(p, emulated, stream);
    case 256: return launch_prefill_for<ArchTag, 256>(p, emulated, stream);
    default: throw std::invalid_argument("prefill attention: head_dim must be 64, 128 or 256");
  }
}

}  // namespace flash_v100
