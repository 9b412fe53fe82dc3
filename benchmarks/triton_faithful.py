"""Triton kernels compiled the way Triton compiles them for a Volta or Turing card, run on a newer GPU.

Triton 3.6 emits no tensor-core instruction for tl.dot on sm_70/sm_75 targets: on a V100 or T4 stock
vLLM's Triton kernels (AWQ GEMM, TRITON_ATTN) run on FMA units. To measure that on the H100 we have, a
kernel is compiled with triton.compile(..., target=GPUTarget("cuda", 70 or 75, 32)), checked for the
absence of mma, its PTX assembled for this GPU (PTX is forward compatible) and launched through
Triton's own launcher. `swapped` puts such kernels in place of a vLLM module's JIT functions for the
duration of a call, so grids, block sizes and workspaces stay vLLM's own code.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

EMULATED_ARCH = {"sm70": 70, "sm75": 75}
# PTX tensor-core instructions: mma.sync (sm_80+, and m8n8k4 on sm_70), wmma.mma, wgmma.mma_async.
MMA_PTX = re.compile(r"\b(?:wg|w)?mma\.")


class FaithfulCompileError(RuntimeError):
    """Triton could not compile vLLM's kernel for the emulated target."""


def with_real_triton(module, kernel_name: str):
    """`module` (a vLLM module of Triton kernels) with `kernel_name` as a real triton JITFunction.

    Without an active GPU driver (CPU-only machine) vLLM swaps triton for a placeholder and the kernels are
    bare Python functions; then import the module again, with its package's helper modules (jit functions
    it calls), while vllm.triton_utils hands out the real triton, which is all compile-to-PTX needs. The
    placeholder modules are put back afterwards. With a GPU the imported module is returned unchanged."""
    import triton
    import triton.language as tl
    import vllm.triton_utils

    if isinstance(getattr(module, kernel_name), triton.runtime.JITFunction):
        return module
    package = module.__name__.rsplit(".", 1)[0] + "."
    saved = {name: mod for name, mod in sys.modules.items() if name.startswith(package)}
    try:
        # The torch ops such a module registers on import exist already, from its first import.
        with mock.patch.multiple(vllm.triton_utils, triton=triton, tl=tl), \
                mock.patch("vllm.utils.torch_utils.direct_register_custom_op", lambda *args, **kwargs: None):
            for name in saved:
                del sys.modules[name]
            return importlib.import_module(module.__name__)
    finally:
        for name in [name for name in sys.modules if name.startswith(package)]:
            del sys.modules[name]
        sys.modules.update(saved)
        for name, saved_module in saved.items():  # `from package import module` finds the saved ones too
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, saved_module)


def assemble(ptx: str, metadata, arch: int) -> bytes:
    """PTX -> cubin for sm_<arch> with Triton's own ptxas step (same flags as Triton uses). PTX is forward
    compatible, so ptxas accepts `.target sm_75` code for a newer --gpu-name; no GPU is needed."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    return make_backend(GPUTarget("cuda", arch, 32)).make_cubin(ptx, {}, metadata, arch)


class EmulatedKernel:
    """Stands in for one of vLLM's Triton JIT functions while vLLM's own launching code runs (see `swapped`),
    so launch grids, block sizes and workspaces are vLLM's. Each launch is specialised on its
    arguments by Triton's own binder (as JITFunction.run does), compiled with
    triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)), checked for mma, and, when run_arch is
    set, the PTX is assembled for sm_<run_arch> and launched by Triton's CompiledKernel launcher (which passes
    the hidden global/profile scratch pointers). With run_arch=None it only compiles (CPU tests);
    no_mma=False skips the mma check (the sm_80 control in the tests)."""

    def __init__(self, jit_fn, arch: int, run_arch: int | None, no_mma: bool = True):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature

        self.fn, self.arch, self.run_arch, self.no_mma = jit_fn, arch, run_arch, no_mma
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.binder = create_function_from_signature(jit_fn.signature, jit_fn.params, self.backend)
        self.kernels = {}  # specialisation -> CompiledKernel

    def compile(self, *args, **kwargs):
        import triton
        from triton.compiler import ASTSource

        bound, specialization, options = self.binder(*args, **kwargs)
        key = str((specialization, options))
        if key not in self.kernels:
            options, signature, constexprs, attrs = self.fn._pack_args(self.backend, kwargs, bound,
                                                                      specialization, options)
            try:
                kernel = triton.compile(ASTSource(self.fn, signature, constexprs, attrs), target=self.target,
                                        options=options.__dict__)
            except Exception as e:
                raise FaithfulCompileError(f"triton {triton.__version__} cannot compile vLLM's {self.fn.__name__} "
                                           f"for GPUTarget('cuda', {self.arch}, 32): {e!r}") from e
            ptx = kernel.asm["ptx"]
            if f".target sm_{self.arch}" not in ptx or (self.no_mma and MMA_PTX.search(ptx)):
                raise AssertionError(f"expected sm_{self.arch} PTX without mma: {MMA_PTX.findall(ptx)[:3]}")
            if self.run_arch is not None:
                kernel.kernel = kernel.asm["cubin"] = assemble(ptx, kernel.metadata, self.run_arch)
            self.kernels[key] = kernel
        return self.kernels[key], bound

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            kernel, bound = self.compile(*args, **kwargs)
            if self.run_arch is not None:
                grid_ = tuple(grid(bound) if callable(grid) else grid)
                kernel[grid_ + (1,) * (3 - len(grid_))](*bound.values())
        return launch


@contextlib.contextmanager
def swapped(module, **kernels):
    """Within the block, module.<name> is kernels[name] (EmulatedKernels); vLLM's are restored after."""
    saved = {name: getattr(module, name) for name in kernels}
    try:
        for name, kernel in kernels.items():
            setattr(module, name, kernel)
        yield
    finally:
        for name, kernel in saved.items():
            setattr(module, name, kernel)


class LaunchRecorder:
    """Stands in for a Triton kernel while vLLM's wrapper runs on CPU tensors: records each launch's
    (args, kwargs) instead of running it."""

    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((args, kwargs))


def recorded_launches(module, kernel_name: str, call) -> list[tuple]:
    """(args, kwargs) of each launch of module.<kernel_name> while call() runs vLLM's wrapper."""
    recorder = LaunchRecorder()
    with swapped(module, **{kernel_name: recorder}):
        call()
    return recorder.launches


# Shared memory a CTA may use on the emulated card: a config over it cannot launch there.
SHARED_MEMORY_LIMIT = {70: 96 << 10, 75: 64 << 10}
# FLA modules whose autotune lists depend on the GPU they are imported on: chunk_o's block sizes (by
# shared memory) and warp counts (Hopper or not); cumsum's vector-kernel block sizes (by shared memory;
# GDN runs its scalar kernel, whose list is fixed).
FLA_DEVICE_LISTS = ("chunk_o", "cumsum")


@contextlib.contextmanager
def fla_autotune_lists_of(arch: int):
    """FLA's device-dependent modules imported again as on the emulated card (its shared memory, not a
    Hopper GPU): kernels taken from them meanwhile autotune over the lists a V100 or T4 would (an H200
    gets BK/BV 64/128 and 2-4 warps in chunk_o, a T4 or V100 32/64 and 2-8). On exit the modules hold
    their own objects again (the native kernels keep their autotuning)."""
    package = "vllm.third_party.flash_linear_attention.ops"
    utils = importlib.import_module(f"{package}.utils")  # what the modules' `from .utils import` reads
    modules = [importlib.import_module(f"{package}.{name}") for name in FLA_DEVICE_LISTS]
    saved = [dict(vars(module)) for module in modules]
    limit = SHARED_MEMORY_LIMIT[arch]

    def check_shared_mem(arch: str = "none", tensor_idx: int = 0) -> bool:
        return limit >= utils.Backend.get_shared_memory(arch)

    try:
        with mock.patch.multiple(utils, check_shared_mem=check_shared_mem, is_nvidia_hopper=False):
            for module in modules:
                importlib.reload(module)
        yield
    finally:
        for module, namespace in zip(modules, saved):
            vars(module).clear()
            vars(module).update(namespace)


def unwrap_tuned(kernel):
    """(JIT function, autotune configs or [None], heuristics value dicts, autotune key names) of a
    Triton kernel as vLLM declares it (JIT function under @triton.autotune / @triton.heuristics)."""
    from triton.runtime import JITFunction
    from triton.runtime.autotuner import Autotuner, Heuristics

    configs, heuristics, keys = [None], [], []
    while not isinstance(kernel, JITFunction):
        if isinstance(kernel, Autotuner):
            configs, keys = list(kernel.configs), list(kernel.keys)
        elif isinstance(kernel, Heuristics):
            heuristics.append(kernel.values)
        kernel = kernel.fn
    return kernel, configs, heuristics, keys


def triton_kernels_reachable_from(namespace: dict, seen=None):
    """(globals dict, name, kernel) of every Triton kernel (JIT function, autotuned or with heuristics)
    that the FLA functions in `namespace` can reach through their module globals."""
    import types

    from triton.runtime import JITFunction
    from triton.runtime.autotuner import Autotuner, Heuristics

    seen = set() if seen is None else seen
    for name, value in list(namespace.items()):
        if isinstance(value, (Autotuner, Heuristics, JITFunction)):
            if (id(namespace), name) not in seen:
                seen.add((id(namespace), name))
                yield namespace, name, value
        elif isinstance(value, types.FunctionType) and "flash_linear_attention" in (value.__module__ or ""):
            for function in (value, *(cell.cell_contents for cell in value.__closure__ or ())):
                if isinstance(function, types.FunctionType) and id(function.__globals__) not in seen:
                    seen.add(id(function.__globals__))
                    yield from triton_kernels_reachable_from(function.__globals__, seen)


def bound_arguments(fn, heuristics, args, kwargs) -> dict:
    """A launch's arguments by name, with the values its @triton.heuristics derive added."""
    bound = {**dict(zip(fn.arg_names, args)), **kwargs}
    for values in heuristics:
        bound.update({key: rule(bound) for key, rule in values.items()})
    return bound


def compile_configs(emulated: EmulatedKernel, bound: dict, configs: list) -> list:
    """emulated.compile of each config on the same arguments, in config order, on a thread pool:
    compiling (two ptxas runs per config among it) is most of a faithful benchmark's time (FLA's
    chunked prefill launches 100 configs, 35 distinct per card, 2-12 s each on one CPU core), and LLVM's
    code generation and the ptxas subprocesses overlap across threads (each compile has its own
    MLIR/LLVM context; Triton's own AsyncCompileMode compiles on threads too). 1.5x on 2 CPU cores,
    measured 2026-11-30."""
    def compile_one(config):
        return emulated.compile(**{**bound, **config_options(config)})[0]

    with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        return list(pool.map(compile_one, configs))


def distinct_configs(configs: list, arch: int) -> list:
    """The configs that build different kernels for sm_<arch>: the first of each group that differs only
    in num_stages. Below sm_80 Triton 3.6 runs no pass that reads num_stages (its software pipeliner
    needs cp.async; see make_ttgir in triton/backends/nvidia/compiler.py), so such configs compile to
    the same PTX and cubin (tests/ut/test_gdn_baselines_compile.py checks it): the autotuner on the card
    times copies of one kernel. FLA's chunked prefill has 2-5 stage variants per config."""
    if arch >= 80:
        return list(configs)
    first = {}
    for config in configs:
        key = None if config is None else repr(sorted(
            (name, sorted(value.items()) if name == "kwargs" else value)
            for name, value in vars(config).items() if name != "num_stages"))
        first.setdefault(key, config)
    return list(first.values())


def config_options(config) -> dict:
    return {} if config is None else {**config.kwargs, "num_warps": config.num_warps,
                                      "num_stages": config.num_stages}


class FastestConfig:
    """Stands in for an autotuned vLLM kernel compiled for the emulated card (see EmulatedKernel): the
    first launch of each autotune key compiles every config for the card, drops those over its shared
    memory (they could not launch there), times the rest on this GPU and keeps the fastest, as Triton's
    autotuner would on the card (of configs that build the same kernel there, one: distinct_configs).
    Later launches reuse that choice, so they can be graph-captured."""

    def __init__(self, kernel, arch: int, run_arch: int):
        self.fn, configs, self.heuristics, self.keys = unwrap_tuned(kernel)
        self.configs = distinct_configs(configs, arch)
        self.emulated = EmulatedKernel(self.fn, arch, run_arch)
        self.limit = SHARED_MEMORY_LIMIT[arch]
        self.best = {}  # autotune key -> launch options

    def _key(self, bound: dict):
        return tuple(repr(bound[name].dtype) if hasattr(bound[name], "dtype") else repr(bound[name])
                     for name in self.keys if name in bound)

    def _fastest(self, grid, bound: dict) -> dict:
        import torch

        compiled_configs = compile_configs(self.emulated, bound, self.configs)
        timings = []
        for config, compiled in zip(self.configs, compiled_configs):
            options = config_options(config)
            if compiled.metadata.shared > self.limit:
                continue
            launch = self.emulated[grid]
            launch(**{**bound, **options})  # warm-up
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(3):
                launch(**{**bound, **options})
            end.record()
            end.synchronize()
            timings.append((start.elapsed_time(end), options))
        if not timings:
            raise FaithfulCompileError(f"every config of {self.fn.__name__} needs more than {self.limit} bytes of "
                                       f"shared memory on sm_{self.emulated.arch}")
        return min(timings, key=lambda timing: timing[0])[1]

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            bound = bound_arguments(self.fn, self.heuristics, args, kwargs)
            key = self._key(bound)
            if key not in self.best:
                self.best[key] = self._fastest(grid, bound)
            self.emulated[grid](**{**bound, **self.best[key]})
        return launch
