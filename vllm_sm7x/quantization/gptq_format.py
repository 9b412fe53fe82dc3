"""GPTQ checkpoint tensors and their conversion to the AWQ kernels' layout, in plain PyTorch.

GPTQ checkpoints (4-bit, symmetric, no act-order: what vLLM serves as `uint4b8`) store, for a linear
layer y = x @ W with W [K, N]:
  qweight [K/8, N] int32: 8 consecutive k per word, k = 8i + j in nibble j (packed along K, unlike AWQ)
  scales  [K/G, N] fp16;  W[k, n] = (q[k, n] - 8) * scale[k // G, n]
  qzeros  [K/G, N/8] and g_idx [K]: fixed by the format here (zero 8 for every group; g_idx[k] = k // G)
The AWQ kernels compute q * scale + bias with bias = -zero * scale, so a symmetric GPTQ weight is an
AWQ weight whose zero is 8: only the nibbles move (awq_format.py has the kernel layout).
"""
from __future__ import annotations

import torch

from vllm_sm7x.quantization.awq_format import (SUPPORTED_GROUP_SIZES, AwqKernelWeight, pack_column_chunks,
                                               scale_zero_words)

GPTQ_SYMMETRIC_ZERO = 8  # uint4b8: stored values are the weight + 8


def _shifts(device) -> torch.Tensor:
    return torch.arange(8, dtype=torch.int32, device=device) * 4


def unpack_gptq(qweight: torch.Tensor) -> torch.Tensor:
    """int32 [K/8, N] packed along K -> int32 [K, N] of values 0..15."""
    values = (qweight.unsqueeze(1) >> _shifts(qweight.device).view(1, 8, 1)) & 0xF
    return values.reshape(qweight.shape[0] * 8, qweight.shape[1])


def pack_gptq(values: torch.Tensor) -> torch.Tensor:
    """int [K, N] of values 0..15 -> int32 [K/8, N] packed along K (GPTQ's order)."""
    K, N = values.shape
    if K % 8:
        raise ValueError(f"cannot pack {K} rows: the count must be a multiple of 8")
    shifts = _shifts(values.device).to(torch.int64).view(1, 8, 1)
    words = (values.to(torch.int64).reshape(K // 8, 8, N) << shifts).sum(1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement


def quantize_gptq(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest symmetric 4-bit quantisation of W [K, N] into GPTQ tensors (qweight, scales).
    Used for test checkpoints."""
    K, N = weight.shape
    if K % group_size or K % 8:
        raise ValueError(f"W [{K}, {N}]: K must be a multiple of the group size {group_size} and of 8")
    w = weight.double().reshape(K // group_size, group_size, N)
    scales = (w.abs().amax(1) / 7).clamp(min=1e-8).half()
    q = torch.round(w / scales.double().unsqueeze(1)).clamp(-8, 7) + GPTQ_SYMMETRIC_ZERO
    return pack_gptq(q.reshape(K, N).int()), scales


def dequantize_gptq(qweight: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reference: W [K, N] in float64 from symmetric GPTQ tensors."""
    q = unpack_gptq(qweight).double() - GPTQ_SYMMETRIC_ZERO
    return q * scales.double().repeat_interleave(group_size, 0)


def gptq_to_kernel_layout(qweight: torch.Tensor, scales: torch.Tensor, group_size: int) -> AwqKernelWeight:
    """Symmetric 4-bit GPTQ (no act-order) -> the AWQ kernels' layout, on the tensors' device (load time)."""
    if group_size not in SUPPORTED_GROUP_SIZES:
        raise ValueError(f"GPTQ group size {group_size} is not supported: use one of {SUPPORTED_GROUP_SIZES}")
    K, N = qweight.shape[0] * 8, qweight.shape[1]
    if K % group_size:
        raise ValueError(f"K = {K} is not a multiple of the group size {group_size}")
    if scales.shape != (K // group_size, N):
        raise ValueError(f"scales {tuple(scales.shape)} do not match qweight {tuple(qweight.shape)} with group size "
                         f"{group_size} (want [{K // group_size}, {N}])")
    packed = pack_column_chunks(lambda c0, c1: unpack_gptq(qweight[:, c0:c1]).t(), N)
    zeros = torch.full(scales.shape, GPTQ_SYMMETRIC_ZERO, dtype=torch.float32, device=scales.device)
    return AwqKernelWeight(packed, scale_zero_words(scales, zeros), group_size)
