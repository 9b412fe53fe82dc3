"""Fixtures shared by the CPU and GPU tests of flash-attn-v100."""
import pytest
import torch

E5M2_MAX = 57344.0


def quantize_e5m2(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The FP8 E5M2 cache write, in PyTorch bit arithmetic (any device): x / scale in float32, saturated
    at +-57344 (inf too, NaN kept), rounded to fp16, then to nearest even on the dropped low byte."""
    value = x.float() / scale
    value = torch.where(value.abs() > E5M2_MAX, torch.copysign(torch.full_like(value, E5M2_MAX), value), value)
    bits = value.half().view(torch.int16).int() & 0xFFFF
    nan = (bits & 0x7FFF) > 0x7C00
    rounded = (bits + 0x7F + ((bits >> 8) & 1)) >> 8
    byte = torch.where(nan, (bits >> 8) | 0x02, rounded) & 0xFF
    return byte.to(torch.uint8).view(torch.float8_e5m2)


def dequantize_e5m2(stored: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """fp16 value of an E5M2 cache times its scale (the byte is the fp16's high byte: exact)."""
    return (stored.view(torch.uint8).to(torch.int16) << 8).view(torch.float16).float().mul(scale).half()


@pytest.fixture
def e5m2():
    """(quantize, dequantize) references of the FP8 E5M2 KV cache."""
    return quantize_e5m2, dequantize_e5m2
