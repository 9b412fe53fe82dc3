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
import re
import sys
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
