"""Fixtures shared by the CPU and GPU tests of flash-attn-v100."""
import pytest
import torch

E5M2_MAX = 57344.0


def quantize_e5m2(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The FP8 E5M2 cache write, in PyTorch bit arithmetic (any device): x / scale in float32, saturated
    at +-57344 (inf too, NaN kept), truncated to fp16 with a sticky bit for the dropped part, then
    rounded to nearest even on the dropped low byte (one rounding, as a direct float -> E5M2 cast)."""
    value = x.float() / scale
    value = torch.where(value.abs() > E5M2_MAX, torch.copysign(torch.full_like(value, E5M2_MAX), value), value)
    bits = value.half().view(torch.int16).int() & 0xFFFF
    bits = bits - (value.half().float().abs() > value.abs()).int()  # fp16 rounded away from zero: truncate
    truncated = (bits.to(torch.int16)).view(torch.float16).float()
    bits = bits | (truncated != value).int()  # sticky: the truncation dropped something
    nan = (bits & 0x7FFF) > 0x7C00
    rounded = (bits + 0x7F + ((bits >> 8) & 1)) >> 8
    byte = torch.where(nan, (bits >> 8) | 0x02, rounded) & 0xFF
    return byte.to(torch.uint8).view(torch.float8_e5m2)


def dequantize_e5m2(stored: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """float32 value of an E5M2 cache times its scale (the byte is the fp16's high byte: exact), as the
    kernels compute it."""
    return (stored.view(torch.uint8).to(torch.int16) << 8).view(torch.float16).float().mul(scale)


@pytest.fixture
def e5m2():
    """(quantize, dequantize) references of the FP8 E5M2 KV cache."""
    return quantize_e5m2, dequantize_e5m2
