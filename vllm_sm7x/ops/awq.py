"""AWQ W4A16 linear on SM70/SM75: fused tensor-core kernel for small M, dequantise + cuBLAS above."""
from __future__ import annotations

import torch

from vllm_sm7x.activation import kernel_path
from vllm_sm7x.ops import load_kernels
from vllm_sm7x.quantization.awq_format import AwqKernelWeight

load_kernels()

# Rows up to which the fused kernel runs; above, the weights are dequantised in column chunks
# and multiplied by cuBLAS (which reads x once per chunk). First estimate, to be set by measurement.
FUSED_MAX_M = 64
# Bound on the fp16 scratch of the dequantise + cuBLAS path.
DEQUANT_CHUNK_BYTES = 64 << 20


def awq_gemm(x: torch.Tensor, weight: AwqKernelWeight, bias: torch.Tensor | None = None, path: str | None = None,
             split_k: int = 0) -> torch.Tensor:
    """x [M, K] fp16 @ W -> [M, N] fp16 through the fused kernel (split_k 0: automatic)."""
    return torch.ops._C_sm7x.awq_gemm(x, weight.qweight, weight.scale_zero, weight.group_size, bias,
                                      path or kernel_path(), split_k)


def awq_dequantize(weight: AwqKernelWeight) -> torch.Tensor:
    """W^T [N, K] fp16, as the fused kernel sees it."""
    return torch.ops._C_sm7x.awq_dequantize(weight.qweight, weight.scale_zero, weight.group_size)


def awq_linear(x: torch.Tensor, weight: AwqKernelWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ W (+ bias) for x [..., K] fp16, choosing the path by the number of rows."""
    x2 = x.reshape(-1, weight.in_features)
    if x2.shape[0] <= FUSED_MAX_M:
        out = awq_gemm(x2, weight, bias)
    else:
        chunk = max(64, DEQUANT_CHUNK_BYTES // (2 * weight.in_features) // 64 * 64)
        out = torch.empty(x2.shape[0], weight.out_features, dtype=x.dtype, device=x.device)
        for n0 in range(0, weight.out_features, chunk):
            n1 = min(n0 + chunk, weight.out_features)
            part = AwqKernelWeight(weight.qweight[n0:n1], weight.scale_zero[:, n0:n1].contiguous(),
                                   weight.group_size)
            out[:, n0:n1] = torch.nn.functional.linear(x2, awq_dequantize(part),
                                                       None if bias is None else bias[n0:n1])
    return out.reshape(*x.shape[:-1], weight.out_features)
