"""Which implementation vLLM's layer ops take on our platform, per arch path.

PyPI vLLM ships no sm_70 machine code, so on the sm70 path nothing on the serving path may call a
`vllm._C` kernel: vLLM's CustomOps (RMSNorm, fused add-norm, RoPE, SiLU-and-mul...) run their
PyTorch `forward_native` (compiled by Inductor when compilation is on) and vLLM IR ops their
"native" implementation. On sm75 the stock kernels exist and stay as vLLM chooses. The one `_C` kernel
kept on sm70 is vLLM's custom all-reduce (tensor parallel), and only where vLLM's library was built with
code for the GPUs (custom_allreduce_choice): it has no PyTorch form, and NCCL is the fallback.
Pure functions of the config values (all but vllm_custom_allreduce_runs, which reads the machine), so they
are tested without a GPU.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Collection

from vllm_sm7x.fatbin import CudaImage, cuda_images, runs_on

logger = logging.getLogger(__name__)
server_logger = logging.getLogger("vllm.sm7x")  # shown with vLLM's own start-up lines
# vLLM's kernel library (vllm 0.26): its `_C` ops, the custom all-reduce (`_C_custom_ar`) among them.
VLLM_KERNELS_MODULE = "vllm._C_stable_libtorch"
ALLREDUCE_LOGGED_MARKER = "_VLLM_SM7X_ALLREDUCE_LOGGED"

NATIVE_IR_PRIORITY = ["native"]


def custom_ops_for(path: str | None, custom_ops: list[str]) -> list[str]:
    """vLLM's `compilation_config.custom_ops` for this arch path. A user's explicit "all"/"none"
    is kept ("all" on sm70 is warned about: those kernels do not exist for Volta)."""
    if path != "sm70":
        return custom_ops
    if "all" in custom_ops:
        logger.warning("vllm-sm7x: custom_ops 'all' routes layer ops to vllm._C kernels, which have no "
                       "sm_70 code; expect 'no kernel image is available' on a V100. Drop it.")
        return custom_ops
    if "none" in custom_ops:
        return custom_ops
    return [*custom_ops, "none"]


def ir_priority_for(path: str | None) -> list[str] | None:
    """Default vLLM IR op priority for this path, or None to keep vLLM's CUDA default."""
    return NATIVE_IR_PRIORITY if path == "sm70" else None


# Quantization methods whose dense linear kernels on a V100 are vLLM._C ones (GPTQ's exllama kernel;
# its Marlin form needs SM75+), accepted by vLLM at capability 6.0-7.0 and faulting at the first forward
# (what gptq_sm7x does not claim stays on them).
SM70_C_ONLY_QUANTIZATIONS = ("gptq", "auto_gptq", "gptq_marlin")


def serving_refusal(path: str | None, architecture: str, is_moe: bool, quantization: str | None) -> str | None:
    """Why this model cannot be served on this path, or None. On sm70 a mixture-of-experts layer runs only on
    our AWQ expert GEMM (vLLM's other MoE kernels, unquantized, GPTQ, ..., call `_moe_C`), and GPTQ's dense
    kernels are `_C` ones: neither has sm_70 code, and both would fault in the engine's first forward."""
    if path != "sm70" or quantization == "awq_sm7x":
        return None
    if is_moe:
        return (f"{architecture}: mixture-of-experts models run on SM70 only from AWQ checkpoints (vLLM's other "
                f"MoE kernels, here for quantization {quantization or 'none'}, have no sm_70 code): serve an AWQ "
                "export of this model")
    if quantization in SM70_C_ONLY_QUANTIZATIONS:
        return (f"{architecture}: {quantization} checkpoints run on vLLM's GPTQ kernels, which have no sm_70 code "
                "(its Marlin form needs SM75+), and vllm-sm7x's GPTQ path (gptq_sm7x: checkpoints whose "
                "quant_method is gptq, with --quantization unset or gptq / gptq_marlin / auto_gptq / marlin) did "
                "not take this one: an older export whose settings are only in quantize_config.json needs "
                "--quantization gptq_sm7x; else serve an AWQ export of this model or its fp16 weights")
    return None


def vllm_kernel_images() -> frozenset[CudaImage]:
    """The images in vLLM's kernel library (fatbin.cuda_images); ImportError if vLLM has none installed."""
    spec = importlib.util.find_spec(VLLM_KERNELS_MODULE)
    if spec is None or spec.origin is None:
        raise ImportError(f"no {VLLM_KERNELS_MODULE} module")
    return cuda_images(spec.origin)


def custom_allreduce_choice(images: frozenset[CudaImage],
                            capabilities: Collection[tuple[int, int]]) -> tuple[bool, str]:
    """Whether vLLM may run its custom all-reduce on GPUs of these capabilities, given the images in vLLM's
    kernel library, and why. PyPI's vLLM carries no sm_70 code, so a V100 serving from it all-reduces
    through NCCL; tools/build_vllm_sm70.sh builds vLLM for sm_70, and then vLLM's one-shot peer-to-peer
    kernel runs there too. Where allowed, vLLM still checks world size, NVLink and P2P itself."""
    if not capabilities:
        return False, "NCCL: no GPU visible"
    missing = sorted({c for c in capabilities if not runs_on(images, c)})
    if not missing:
        return True, ("vLLM's custom all-reduce allowed (vLLM's kernels have code for these GPUs; vLLM still "
                      "checks world size, NVLink and P2P)")
    has = " ".join(f"{i.kind}_{i.arch}{i.variant}" for i in sorted(images, key=lambda i: (i.arch, i.kind, i.variant)))
    return False, (f"NCCL: vLLM's kernels have no code for compute capability "
                   f"{', '.join(f'{major}.{minor}' for major, minor in missing)} (they have: {has or 'none'}); "
                   "a vLLM built by tools/build_vllm_sm70.sh has it and keeps vLLM's custom all-reduce")


@functools.cache
def vllm_custom_allreduce_runs() -> bool:
    """custom_allreduce_choice for this machine's GPUs and installed vLLM, logged once per process tree."""
    from vllm_sm7x.activation import visible_gpus

    try:
        allowed, reason = custom_allreduce_choice(vllm_kernel_images(), [g.capability for g in visible_gpus()])
    except (ImportError, OSError, ValueError) as error:
        allowed, reason = False, f"NCCL: vLLM's kernel library could not be read ({error})"
    if not os.environ.get(ALLREDUCE_LOGGED_MARKER):  # once per process tree: workers inherit the marker
        os.environ[ALLREDUCE_LOGGED_MARKER] = "1"
        server_logger.info("vllm-sm7x: tensor-parallel all-reduce: %s", reason)
    return allowed
