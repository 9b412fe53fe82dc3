"""AWQ GEMM-format tensors and the kernel layout, in plain PyTorch (CPU or GPU).

AWQ checkpoints ("version": "gemm") store, for a linear layer y = x @ W with W [K, N]:
  qweight [K, N/8] int32: 8 columns per word, column 8c+j in nibble AWQ_NIBBLE_OF_COLUMN[j]
  qzeros  [K/G, N/8] int32: same packing
  scales  [K/G, N] fp16;  W[k, n] = (q[k, n] - zero[k // G, n]) * scale[k // G, n]

The kernels read (csrc/quantization/awq/awq_gemm.h says why this order):
  qweight    int32 [N/16, K/128, 2, 32, 4], N and K zero-padded to multiples of 16 and 128: tile
             (16 columns, 128 k), half h (columns 8h..8h+7), slot 4i+t = column 8h+i, k 32t..32t+31,
             as 4 words of 8 consecutive k in nibbles AWQ_NIBBLE_OF_COLUMN (the same order as AWQ's)
  scale_zero int32 [K/G, N] holding half2 {scale, -zero * scale}
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Nibble that holds element j of a group of 8 (AWQ's order; the dequantiser pairs nibbles (0,4),
# (1,5), (2,6), (3,7) into half2 lanes, which makes these k pairs (0,1), (2,3), (4,5), (6,7)).
AWQ_NIBBLE_OF_COLUMN = (0, 4, 1, 5, 2, 6, 3, 7)
SUPPORTED_GROUP_SIZES = (32, 64, 128)


def _shifts(device) -> torch.Tensor:
    return torch.tensor(AWQ_NIBBLE_OF_COLUMN, dtype=torch.int32, device=device) * 4


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """int32 [R, C/8] -> int32 [R, C] of values 0..15 (AWQ nibble order along the last dim)."""
    values = (packed.unsqueeze(-1) >> _shifts(packed.device)) & 0xF
    return values.reshape(packed.shape[0], packed.shape[1] * 8)


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """int [R, C] of values 0..15 -> int32 [R, C/8] (AWQ nibble order along the last dim)."""
    rows, cols = values.shape
    if cols % 8:
        raise ValueError(f"cannot pack {cols} columns: the count must be a multiple of 8")
    words = (values.to(torch.int64).reshape(rows, cols // 8, 8) << _shifts(values.device).to(torch.int64)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement


def dequantize_awq(qweight, qzeros, scales, group_size: int) -> torch.Tensor:
    """Reference: W [K, N] in float64 from AWQ GEMM-format tensors."""
    q = unpack_int4(qweight).double()
    zeros = unpack_int4(qzeros).double().repeat_interleave(group_size, 0)
    return (q - zeros) * scales.double().repeat_interleave(group_size, 0)


def quantize_awq(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest asymmetric 4-bit quantisation of W [K, N] into AWQ GEMM format
    (qweight, qzeros, scales). Used for test and benchmark checkpoints."""
    K, N = weight.shape
    if K % group_size or N % 8:
        raise ValueError(f"W [{K}, {N}]: K must be a multiple of the group size {group_size}, N of 8")
    w = weight.double().reshape(K // group_size, group_size, N)
    w_min, w_max = w.amin(1).clamp(max=0), w.amax(1).clamp(min=0)
    scales = ((w_max - w_min) / 15).clamp(min=1e-8).half()
    s = scales.double()
    zeros = torch.round(-w_min / s).clamp(0, 15)
    q = torch.round(w / s.unsqueeze(1) + zeros.unsqueeze(1)).clamp(0, 15)
    return pack_int4(q.reshape(K, N).int()), pack_int4(zeros.int()), scales


TILE_ROWS, TILE_K, SLOT_K = 16, 128, 32  # packed tile: columns, k; k per 16-byte slot
# Columns converted at a time, so load-time conversion needs little scratch memory on the GPU.
_CONVERT_COLUMNS = 1024


@dataclass(frozen=True)
class AwqKernelWeight:
    """One linear layer's weights in the kernel layout (or a stack of experts' weights, leading dim E)."""
    qweight: torch.Tensor     # int32 [N/16, K/128, 2, 32, 4]
    scale_zero: torch.Tensor  # int32 (half2) [K/G, N]
    group_size: int

    @property
    def in_features(self) -> int:
        return self.scale_zero.shape[-2] * self.group_size

    @property
    def out_features(self) -> int:
        return self.scale_zero.shape[-1]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pack_tiles(values: torch.Tensor) -> torch.Tensor:
    """int [N, K] of values 0..15 (W^T) -> int32 [N/16, K/128, 2, 32, 4] (zero-padded tiles)."""
    n, k = values.shape
    padded = values.new_zeros(_round_up(n, TILE_ROWS), _round_up(k, TILE_K))
    padded[:n, :k] = values
    words = pack_int4(padded)  # [Np, Kp/8]: word index = k_tile * 16 + t * 4 + v
    tiles = words.reshape(padded.shape[0] // TILE_ROWS, 2, 8, padded.shape[1] // TILE_K, 4, 4)
    return tiles.permute(0, 3, 1, 2, 4, 5).reshape(tiles.shape[0], tiles.shape[3], 2, 32, 4).contiguous()


def unpack_tiles(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of pack_tiles: int32 [N, K] values of W^T (padding dropped)."""
    tiles, k_tiles = packed.shape[:2]
    words = packed.reshape(tiles, k_tiles, 2, 8, 4, 4).permute(0, 2, 3, 1, 4, 5)
    return unpack_int4(words.reshape(tiles * TILE_ROWS, k_tiles * TILE_K // 8))[:n, :k]


def to_kernel_layout(qweight, qzeros, scales, group_size: int) -> AwqKernelWeight:
    """AWQ GEMM format -> kernel layout, on the tensors' device (run once at load time)."""
    if group_size not in SUPPORTED_GROUP_SIZES:
        raise ValueError(f"AWQ group size {group_size} is not supported: use one of {SUPPORTED_GROUP_SIZES}")
    K, N = qweight.shape[0], qweight.shape[1] * 8
    if K % group_size:
        raise ValueError(f"K = {K} is not a multiple of the group size {group_size}")
    if qzeros.shape != (K // group_size, N // 8) or scales.shape != (K // group_size, N):
        raise ValueError(f"qzeros {tuple(qzeros.shape)} / scales {tuple(scales.shape)} do not match qweight "
                         f"{tuple(qweight.shape)} with group size {group_size}")
    packed = pack_column_chunks(lambda c0, c1: unpack_int4(qweight[:, c0 // 8:c1 // 8]).t(), N)
    return AwqKernelWeight(packed, scale_zero_words(scales, unpack_int4(qzeros)), group_size)


def pack_column_chunks(columns, n: int) -> torch.Tensor:
    """The kernel layout's qweight of n columns, from columns(c0, c1) -> int [c1 - c0, K] values 0..15 of
    W^T, converted a chunk of columns at a time (little scratch memory at load time)."""
    return torch.cat([pack_tiles(columns(c, min(c + _CONVERT_COLUMNS, n))) for c in range(0, n, _CONVERT_COLUMNS)])


def scale_zero_words(scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """fp16 scales and zero points [K/G, N] -> the kernels' int32 [K/G, N] of half2 {scale, -zero * scale}."""
    s = scales.to(torch.float16)
    bias = (-zeros.float() * s.float()).half()
    return torch.stack([s, bias], dim=-1).contiguous().view(torch.int32).squeeze(-1).contiguous()


def experts_to_kernel_layout(qweight, qzeros, scales, group_size: int) -> AwqKernelWeight:
    """The experts of one MoE projection in AWQ GEMM format ([E, K, N/8], [E, K/G, N/8], [E, K/G, N]) ->
    one kernel-layout weight with a leading expert dimension (qweight [E, N/16, K/128, 2, 32, 4],
    scale_zero [E, K/G, N]) for the grouped expert GEMM. Converted expert by expert into tensors
    allocated once, so the scratch is one expert's."""
    if not (qweight.dim() == qzeros.dim() == scales.dim() == 3 and qweight.shape[0] == qzeros.shape[0] ==
            scales.shape[0]):
        raise ValueError(f"expert tensors must be [experts, ...] stacks of one shape, got {tuple(qweight.shape)}, "
                         f"{tuple(qzeros.shape)}, {tuple(scales.shape)}")
    first = to_kernel_layout(qweight[0], qzeros[0], scales[0], group_size)
    stacked = AwqKernelWeight(first.qweight.new_empty(qweight.shape[0], *first.qweight.shape),
                              first.scale_zero.new_empty(qweight.shape[0], *first.scale_zero.shape), group_size)
    for e in range(qweight.shape[0]):
        expert = first if e == 0 else to_kernel_layout(qweight[e], qzeros[e], scales[e], group_size)
        stacked.qweight[e].copy_(expert.qweight)
        stacked.scale_zero[e].copy_(expert.scale_zero)
    return stacked


def dequantize_kernel_layout(weight: AwqKernelWeight) -> torch.Tensor:
    """Reference for the kernels' dequantiser: W^T [N, K] as the kernel computes it in fp16
    (q * scale + bias with one rounding)."""
    q = unpack_tiles(weight.qweight, weight.out_features, weight.in_features).float()
    halves = weight.scale_zero.contiguous().view(torch.float16).reshape(*weight.scale_zero.shape, 2)
    scale = halves[..., 0].t().float().repeat_interleave(weight.group_size, 1)
    bias = halves[..., 1].t().float().repeat_interleave(weight.group_size, 1)
    return (q * scale + bias).half()
