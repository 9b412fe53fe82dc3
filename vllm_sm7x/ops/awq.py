"""AWQ W4A16 on SM70/SM75. One op decides per call (in C++, so it holds for any batch size under
torch.compile and CUDA graphs): the fused tensor-core kernel for few rows, the tiled one (x shared by
a CTA's columns, weights read once per 32 tokens) for 17-128 rows, dequantise + cuBLAS above."""
from __future__ import annotations

import torch

from vllm_sm7x.activation import kernel_path
from vllm_sm7x.ops import load_kernels
from vllm_sm7x.quantization.awq_format import AwqKernelWeight

load_kernels()


def awq_gemm(x: torch.Tensor, weight: AwqKernelWeight, bias: torch.Tensor | None = None, path: str | None = None,
             warps: int = 0, split_k: int = 0, column_tiles: int = 0) -> torch.Tensor:
    """x [M, K] fp16 @ W -> [M, N] fp16, always through the fused kernel (0: the planned value)."""
    return torch.ops._C_sm7x.awq_gemm(x, weight.qweight, weight.scale_zero, weight.group_size, bias,
                                      path or kernel_path(), warps, split_k, column_tiles)


def awq_gemm_tiled(x: torch.Tensor, weight: AwqKernelWeight, bias: torch.Tensor | None = None,
                   path: str | None = None, token_tiles: int = 0, warps: int = 0, split_k: int = 0) -> torch.Tensor:
    """x [M, K] fp16 @ W -> [M, N] fp16, always through the tiled kernel (0: the planned value)."""
    return torch.ops._C_sm7x.awq_gemm_tiled(x, weight.qweight, weight.scale_zero, weight.group_size, bias,
                                            path or kernel_path(), token_tiles, warps, split_k)


def awq_dequantize(weight: AwqKernelWeight) -> torch.Tensor:
    """W^T [N, K] fp16, as the fused kernel sees it."""
    return torch.ops._C_sm7x.awq_dequantize(weight.qweight, weight.scale_zero, weight.group_size)


def awq_linear(x: torch.Tensor, weight: AwqKernelWeight, bias: torch.Tensor | None = None,
               path: str | None = None) -> torch.Tensor:
    """y = x @ W (+ bias) for x [..., K] fp16."""
    out = torch.ops._C_sm7x.awq_linear(x.reshape(-1, weight.in_features), weight.qweight, weight.scale_zero,
                                       weight.group_size, bias, path or kernel_path())
    return out.reshape(*x.shape[:-1], weight.out_features)


def awq_plan(M: int, weight_shape: tuple[int, int], group_size: int, path: str | None = None,
             device: int | None = None) -> dict:
    """How awq_linear runs M rows of a [K, N] weight on this GPU: the fused or tiled kernel's registry
    entry and split count, or dequantise + cuBLAS."""
    K, N = weight_shape
    return _plan_dict(torch.ops._C_sm7x.awq_plan(
        M, N, K, group_size, path or kernel_path(), torch.cuda.current_device() if device is None else device))


def linear_row_ranges() -> dict[str, int]:
    """The most rows awq_linear gives each tensor-core kernel ({"fused": .., "tiled": ..}); above the
    tiled kernel's it dequantises and calls cuBLAS. Read from the C++ choice, not restated."""
    kernel_names = {0: "fused", 2: "tiled"}
    ranges, M = {}, 1
    while (kernel := torch.ops._C_sm7x.awq_linear_kernel(M)) in kernel_names:
        ranges[kernel_names[kernel]] = M
        M += 1
    return ranges


def _plan_dict(plan: list[int]) -> dict:
    """awq_plan's and awq_plan_model's [token_tiles, warps, splits, kernel, column_tiles] as a dict."""
    token_tiles, warps, splits, kernel, column_tiles = plan
    if kernel == 1:
        return {"kernel": "dequant+cublas"}
    return {"kernel": "tiled" if kernel == 2 else "fused", "token_tiles": token_tiles, "column_tiles": column_tiles,
            "warps": warps, "splits": splits}


def device_model(path: str | None = None, device: int | None = None) -> dict:
    """What the AWQ cost model knows of this GPU for path's kernels: SMs, peak bytes per microsecond, SM
    clock (MHz) and CTAs per SM of each fused_registry() entry, in its order; plan_with_model's inputs."""
    sms, bytes_per_us, sm_mhz, *ctas = torch.ops._C_sm7x.awq_device_model(
        path or kernel_path(), torch.cuda.current_device() if device is None else device)
    return {"sms": int(sms), "bytes_per_us": bytes_per_us, "sm_mhz": sm_mhz, "ctas_per_sm": [int(c) for c in ctas]}


def plan_with_model(M: int, weight_shape: tuple[int, int], group_size: int, model: dict) -> dict:
    """The fused kernel's cost-model plan on a described GPU (device_model's dict; no GPU needed), in
    awq_plan's form, for any M (awq_linear itself runs the fused kernel only up to 16 rows)."""
    K, N = weight_shape
    return _plan_dict(torch.ops._C_sm7x.awq_plan_model(
        M, N, K, group_size, model["sms"], model["bytes_per_us"], model["sm_mhz"], model["ctas_per_sm"]))


def plan_tiled_with_model(M: int, weight_shape: tuple[int, int], group_size: int, model: dict) -> dict:
    """The tiled kernel's plan on a described GPU (model["tiled_ctas_per_sm"]: one per tiled_registry()
    entry), in awq_plan's form."""
    K, N = weight_shape
    return _plan_dict(torch.ops._C_sm7x.awq_plan_tiled_model(
        M, N, K, group_size, model["sms"], model["bytes_per_us"], model["sm_mhz"], model["tiled_ctas_per_sm"]))


def _registry(flat: list[int]) -> list[dict]:
    return [{"token_tiles": t, "warps": w, "column_tiles": c} for t, w, c in zip(flat[::3], flat[1::3], flat[2::3])]


def fused_registry() -> list[dict]:
    """The fused kernel's instantiations (csrc/quantization/awq/awq_registry.h)."""
    return _registry(torch.ops._C_sm7x.awq_fused_registry())


def tiled_registry() -> list[dict]:
    """The tiled kernel's instantiations (csrc/quantization/awq/awq_registry.h); warps = column tiles per CTA."""
    return _registry(torch.ops._C_sm7x.awq_tiled_registry())


def grouped_registry() -> list[dict]:
    """The grouped (MoE) kernel's instantiations (csrc/quantization/awq/awq_registry.h)."""
    return _registry(torch.ops._C_sm7x.awq_grouped_registry())
