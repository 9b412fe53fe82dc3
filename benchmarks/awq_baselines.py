"""Stock vLLM 0.26.0 AWQ baselines on the same AWQ GEMM-format tensors as our kernel.

Imported by benchmarks/awq_gemm.py and the tests (benchmarks/ is not a package: load it by path).

  vllm_awq_cuda              vLLM's AWQ linear method on a CUDA GPU (AutoAWQLinearMethod.apply): the CUDA
                             awq_gemm op below 256 tokens, CUDA awq_dequantize + torch.matmul from 256 up.
  vllm_marlin                vLLM's Marlin AWQ linear (AutoAWQMarlinLinearMethod with MarlinLinearKernel): what
                             vLLM 0.26 runs on a T4; sm75 only (Marlin needs capability 7.5).
  triton_awq_native          vLLM's Triton AWQ GEMM (awq_gemm_triton), compiled for this GPU.
  triton_awq_faithful_<emu>  the same call, but vLLM's awq_gemm_kernel is compiled the way Triton compiles it
                             on that card (GPUTarget("cuda", 70 or 75, 32): tl.dot becomes FMAs, no mma), then
                             that PTX is assembled for this GPU and launched through Triton's own launcher.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_info import error_note  # noqa: E402
from triton_faithful import (EMULATED_ARCH, MMA_PTX, EmulatedKernel, FaithfulCompileError,  # noqa: E402,F401
                             assemble, swapped, with_real_triton)


def vllm_awq_triton():
    """vLLM's awq_triton module with awq_gemm_kernel as a real triton JITFunction (also on CPU-only machines)."""
    from vllm.model_executor.layers.quantization import awq_triton

    return with_real_triton(awq_triton, "awq_gemm_kernel")


def awq_gemm_triton_with(module, kernel) -> Callable:
    """vLLM's awq_gemm_triton, with `kernel` in place of its module-global awq_gemm_kernel during the call."""
    def run(*args, **kwargs):
        with swapped(module, awq_gemm_kernel=kernel):
            return module.awq_gemm_triton(*args, **kwargs)
    return run


_EMULATED: dict = {}  # (arch, run_arch) -> EmulatedKernel


def one_process_tensor_parallel_group() -> None:
    """vLLM's layers ask the tensor-parallel group for their shard when they make their weights (the
    Marlin method's did, and failed outside an engine: "tensor model parallel group is not
    initialized"); a group of this one process, as the engine makes for TP1. Once per process."""
    from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
    from vllm.distributed import parallel_state

    if parallel_state.model_parallel_is_initialized():
        return
    init_file = Path(tempfile.mkdtemp(prefix="sm7x-tp1-")) / "init"
    # The groups read only the parallel settings (defaults: one process); a one-process gloo group
    # needs no device, so "cpu" spares the device probe (and lets the CPU tests run this).
    with set_current_vllm_config(VllmConfig(device_config=DeviceConfig(device="cpu"))):
        parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                                    distributed_init_method=f"file://{init_file}", backend="gloo")
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=1)


def marlin_baseline(qweight, qzeros, scales, config) -> Callable[[torch.Tensor], torch.Tensor]:
    """vLLM's Marlin AWQ linear on these weights, built as vLLM builds a layer (create_weights, the
    checkpoint's tensors, process_weights_after_loading), with MarlinLinearKernel whatever this GPU's
    first choice would be."""
    from vllm.model_executor.kernels.linear import MarlinLinearKernel
    from vllm.model_executor.layers.quantization.auto_awq import AutoAWQMarlinLinearMethod

    one_process_tensor_parallel_group()
    K, N = qweight.shape[0], qweight.shape[1] * 8
    method, layer = AutoAWQMarlinLinearMethod(config), torch.nn.Module()
    with torch.device(qweight.device):  # as vLLM's loader does: parameters are made on the GPU
        method.create_weights(layer, K, [N], K, N, scales.dtype, weight_loader=None)
    if not isinstance(method.kernel, MarlinLinearKernel):
        method.kernel = MarlinLinearKernel(method.kernel.config, w_q_param_name="qweight", w_s_param_name="scales",
                                           w_zp_param_name="qzeros")
    for name, tensor in (("qweight", qweight), ("qzeros", qzeros), ("scales", scales)):
        getattr(layer, name).data.copy_(tensor)
    method.process_weights_after_loading(layer)
    return lambda x: method.apply(layer, x)


def stock_baselines(qweight, qzeros, scales, group_size: int, emulate: str
                    ) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], dict[str, str]]:
    """name -> fn(x [M, K] fp16) -> out [M, N] fp16; and name -> note. A baseline missing from the first dict
    cannot run here and its note says why; a present one may carry a note on how it was built."""
    import vllm._custom_ops  # noqa: F401  (loads vLLM's CUDA ops into torch.ops._C on a CUDA platform)
    import triton
    import vllm.envs as envs
    from triton.runtime import driver
    from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig, AutoAWQLinearMethod

    fns, notes = {}, {}
    K, N = qweight.shape[0], qweight.shape[1] * 8
    config = AutoAWQConfig(weight_bits=4, group_size=group_size, zero_point=True, lm_head_quantized=False)
    split_k = config.pack_factor  # what AutoAWQLinearMethod.apply passes as split_k_iters (8)
    awq_triton = vllm_awq_triton()

    # 1. vLLM's unoptimised AWQ method object (what vLLM 0.26 runs where Marlin cannot: a layer Marlin's
    # tiles refuse, batch-invariant mode).
    name = "vllm_awq_cuda"
    missing = [op for op in ("awq_gemm", "awq_dequantize") if not hasattr(torch.ops._C, op)]
    # The CUDA op's own argument checks (csrc/quantization/awq/gemm_kernels.cu), which throw otherwise.
    shape_ok = N % 64 == 0 and group_size % 32 == 0 and N % group_size == 0
    if missing:
        notes[name] = f"torch.ops._C lacks {missing} after `import vllm._custom_ops` (vLLM built without CUDA ops?)"
    elif envs.VLLM_USE_TRITON_AWQ:
        notes[name] = "VLLM_USE_TRITON_AWQ=1 routes vLLM's AWQ ops to Triton; unset it for the CUDA baseline"
    elif not shape_ok:
        notes[name] = (f"vLLM's CUDA awq_gemm needs N % 64 == 0, group_size % 32 == 0 and N % group_size == 0 "
                       f"(N={N}, group_size={group_size})")
    else:
        method, layer = AutoAWQLinearMethod(config), SimpleNamespace(qweight=qweight, qzeros=qzeros, scales=scales)
        fns[name] = lambda x: method.apply(layer, x)
        if emulate == "sm70":
            notes[name] = ("reference only: vLLM refuses AWQ below capability 75 (AutoAWQConfig.get_min_capability)"
                           " and its CUDA kernel asserts below sm_75: on a V100 this baseline does not exist")
        else:
            notes[name] = ("CUDA awq_gemm (split_k=8) below 256 tokens, awq_dequantize + torch.matmul from 256; "
                           "on a T4 its mma is m16n8k8, on this GPU the sm_80+ m16n8k16 branch runs")

    # 2. Marlin: what vLLM 0.26 picks for AWQ from capability 7.5 (AutoAWQMarlinLinearMethod).
    name = "vllm_marlin"
    if emulate == "sm70":
        notes[name] = "vLLM's Marlin needs capability 7.5 (MarlinLinearKernel.get_min_capability): no V100 baseline"
    else:
        try:
            fns[name] = marlin_baseline(qweight, qzeros, scales, config)
            notes[name] = ("vLLM's AutoAWQMarlinLinearMethod with MarlinLinearKernel (what it picks on a T4; here "
                           "forced past Hopper's Machete/CUTLASS choices): on this GPU Marlin's sm_90 build runs "
                           "(cp.async, m16n8k16), on a T4 its sm_75 build")
        except Exception as e:  # a baseline that cannot be built here is reported, not fatal
            notes[name] = f"could not be built: {error_note(e)}"

    # 3. vLLM's Triton kernel as vLLM calls it (ops.awq_gemm under VLLM_USE_TRITON_AWQ=1), built for this GPU.
    fns["triton_awq_native"] = lambda x: awq_triton.awq_gemm_triton(x, qweight, scales, qzeros, split_k)

    # 4. The same call with the kernel compiled for the emulated card, run here.
    name = f"triton_awq_faithful_{emulate}"
    arch, run_arch = EMULATED_ARCH[emulate], driver.active.get_current_target().arch
    # One EmulatedKernel per target, shared by every weight: its specialisation cache then works like
    # Triton's own (compile once per specialisation, not once per weight tensor).
    if (arch, run_arch) not in _EMULATED:
        _EMULATED[arch, run_arch] = EmulatedKernel(awq_triton.awq_gemm_kernel, arch, run_arch)
    kernel = _EMULATED[arch, run_arch]
    faithful = awq_gemm_triton_with(awq_triton, kernel)
    fns[name] = lambda x: faithful(x, qweight, scales, qzeros, split_k)
    try:  # compile (asserting no mma) and launch once now, so a refused target becomes a note
        fns[name](torch.zeros(1, K, dtype=scales.dtype, device=qweight.device))
    except FaithfulCompileError as e:
        del fns[name]
        notes[name] = str(e)
    else:
        notes[name] = (f"triton {triton.__version__}: vLLM's awq_gemm_kernel compiled for GPUTarget('cuda', {arch}, "
                       f"32): PTX .target sm_{arch}, no mma instruction (tl.dot lowered to FMA); that PTX assembled "
                       f"by ptxas for sm_{run_arch}{'a' if run_arch >= 90 else ''} and launched by Triton's launcher")
    return fns, notes
