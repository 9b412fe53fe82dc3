"""Python side of vllm_sm7x._C (torch.ops._C_sm7x): loading, fake implementations, thin wrappers."""
from __future__ import annotations

import functools
import json

import torch

from vllm_sm7x.activation import kernel_path


@functools.cache
def load_kernels() -> None:
    """Loads the CUDA extension and the fake (meta) implementation of every op, once."""
    try:
        import vllm_sm7x._C  # noqa: F401  (registers torch.ops._C_sm7x)
    except ImportError as e:
        raise ImportError(
            f"vllm_sm7x._C could not be loaded ({e}): install vllm-sm7x with its CUDA extension "
            "(pip install --no-build-isolation vllm-sm7x, see README) and check `vllm-sm7x doctor`"
        ) from e
    import vllm_sm7x.ops.meta_registration  # noqa: F401


def build_info() -> dict:
    """What the loaded extension was compiled for: {"cuda_archs", "cuda_runtime", "paths"}."""
    load_kernels()
    return json.loads(torch.ops._C_sm7x.build_info())


def mma_gemm(a: torch.Tensor, b: torch.Tensor, path: str | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """a [M, K] fp16 @ b [N, K]^T -> fp32 [M, N] through the tensor-core path `path`
    ("sm70", "sm75", or "auto"; default: this process's path, see activation.kernel_path)."""
    load_kernels()
    if out is None:
        out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float32, device=a.device)
    torch.ops._C_sm7x.mma_gemm(a, b, out, path or kernel_path())
    return out
