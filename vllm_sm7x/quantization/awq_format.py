"""AWQ GEMM-format tensors and the kernel layout, in plain PyTorch (CPU or GPU).

AWQ checkpoints ("version": "gemm") store, for a linear layer y = x @ W with W [K, N]:
  qweight [K, N/8] int32: 8 columns per word, column 8c+j in nibble AWQ_NIBBLE_OF_COLUMN[j]
  qzeros  [K/G, N/8] int32: same packing
  scales  [K/G, N] fp16;  W[k, n] = (q[k, n] - zero[k // G, n]) * scale[k // G, n]

The kernels read (see csrc/quantization/awq/awq_gemm.h):
  qweight    [N, K/8] int32: 8 consecutive k per word, k = 8c+j in nibble AWQ_NIBBLE_OF_COLUMN[j]
             (the same order, so conversion is unpack, transpose, pack)
  scale_zero [K/G, N] int32 holding half2 {scale, -zero * scale}
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


@dataclass(frozen=True)
class AwqKernelWeight:
    """One linear layer's weights in the kernel layout."""
    qweight: torch.Tensor     # int32 [N, K/8]
    scale_zero: torch.Tensor  # int32 (half2) [K/G, N]
    group_size: int

    @property
    def in_features(self) -> int:
        return self.qweight.shape[1] * 8

    @property
    def out_features(self) -> int:
        return self.qweight.shape[0]


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
    packed = pack_int4(unpack_int4(qweight).t().contiguous())
    s = scales.to(torch.float16)
    bias = (-unpack_int4(qzeros).float() * s.float()).half()
    scale_zero = torch.stack([s, bias], dim=-1).contiguous().view(torch.int32).squeeze(-1)
    return AwqKernelWeight(packed, scale_zero.contiguous(), group_size)


def dequantize_kernel_layout(weight: AwqKernelWeight) -> torch.Tensor:
    """Reference for the kernels' dequantiser: W^T [N, K] as the kernel computes it in fp16."""
    q = unpack_int4(weight.qweight).half()  # [N, K]
    halves = weight.scale_zero.contiguous().view(torch.float16).reshape(*weight.scale_zero.shape, 2)
    scale = halves[..., 0].t().repeat_interleave(weight.group_size, 1)
    bias = halves[..., 1].t().repeat_interleave(weight.group_size, 1)
    return (q.float() * scale.float() + bias.float()).half()
