"""`vllm-sm7x doctor`: is this machine ready to serve with vllm-sm7x, and if not, what to do.

Each check returns a Check; a failed one carries the fix. Checks never raise: a check that breaks
reports itself as failed with the exception, so the doctor runs on broken installs too.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

from vllm_sm7x.activation import Gpu, current_activation, native_path, visible_gpus
from vllm_sm7x.fatbin import runs_on
from vllm_sm7x.op_policy import VLLM_KERNELS_MODULE, custom_allreduce_choice, vllm_kernel_images

PINNED_TORCH = "2.11.0"
# vLLM 0.26's build keeps sm_70 only with toolkits older than 12.8 (from 12.8 on it drops 7.0).
BUILD_VLLM_SM70 = ("build vLLM 0.26.0 for sm_70 against torch cu126 with a CUDA 12.6 toolkit: "
                   "CUDA_HOME=/usr/local/cuda-12.6 bash tools/build_vllm_sm70.sh")
PINNED_VLLM = "0.26.0"
TORCH_CU126 = "pip install torch==2.11.0 --index-url https://download.pytorch.org/whl/cu126"


@dataclass
class Check:
    name: str
    status: str  # "ok", "info", "warn" or "fail"
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Context:
    """What several checks need, gathered once."""
    gpus: list[Gpu]

    @property
    def capabilities(self) -> set[tuple[int, int]]:
        return {g.capability for g in self.gpus}


def check_python(ctx: Context) -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", "ok" if ok else "fail", platform.python_version(),
                 "" if ok else "use Python 3.10-3.12 (vLLM 0.26 wheels)")


def check_gpus(ctx: Context) -> Check:
    if not ctx.gpus:
        return Check("gpus", "fail", "no NVIDIA GPU visible (no driver, or CUDA_VISIBLE_DEVICES hides them)",
                     "run on a machine with a V100/T4/RTX 20xx and the NVIDIA driver installed")
    detail = ", ".join(f"{g.index}: {g.name} ({g.capability[0]}.{g.capability[1]})" for g in ctx.gpus)
    return Check("gpus", "ok", detail, data={"gpus": [asdict(g) for g in ctx.gpus]})


def check_driver(ctx: Context) -> Check:
    import pynvml

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
    finally:
        pynvml.nvmlShutdown()
    driver_cuda = (cuda // 1000, cuda % 1000 // 10)
    detail = f"driver {driver}, supports CUDA up to {driver_cuda[0]}.{driver_cuda[1]}"
    try:
        import torch

        torch_cuda = torch.version.cuda
    except ImportError:
        torch_cuda = None
    if torch_cuda and int(torch_cuda.split(".")[0]) > driver_cuda[0]:
        return Check("driver", "fail", detail + f"; torch needs CUDA {torch_cuda}",
                     f"update the NVIDIA driver (>= 580 for CUDA 13) or install torch for CUDA {driver_cuda[0]} "
                     f"({TORCH_CU126})")
    return Check("driver", "ok", detail, data={"driver": driver, "cuda": list(driver_cuda)})


def check_torch(ctx: Context) -> Check:
    import torch

    archs = torch._C._cuda_getArchFlags().split() if torch.version.cuda else []
    detail = f"{torch.__version__}, CUDA {torch.version.cuda}, built for {' '.join(archs) or 'no GPU'}"
    data = {"version": torch.__version__, "cuda": torch.version.cuda, "archs": archs}
    if torch.version.cuda is None:
        return Check("torch", "fail", detail, f"install a CUDA build of torch: {TORCH_CU126}", data)
    missing = sorted({f"sm_{c[0]}{c[1]}" for c in ctx.capabilities if native_path(c)} - set(archs))
    if missing:
        return Check("torch", "fail", detail, f"torch {torch.__version__} has no {', '.join(missing)} kernels: "
                     f"install torch=={PINNED_TORCH} from the cu126 index ({TORCH_CU126})", data)
    if torch.__version__.split("+")[0] != PINNED_TORCH:
        return Check("torch", "warn", detail, f"vllm-sm7x is built and tested against torch=={PINNED_TORCH}", data)
    return Check("torch", "ok", detail, data=data)


def check_vllm(ctx: Context) -> Check:
    import vllm

    version = vllm.__version__
    data = {"version": version}
    needs_sm70 = any(native_path(c) == "sm70" for c in ctx.capabilities)
    try:
        importlib.import_module(VLLM_KERNELS_MODULE)
        images = vllm_kernel_images()
        data["kernel_archs"] = [f"sm_{arch}" for arch in sorted({i.arch for i in images if i.kind == "sass"})]
        archs = " ".join(data["kernel_archs"]) or "no machine code"
        custom_allreduce, data["all_reduce"] = custom_allreduce_choice(images, ctx.capabilities)
        if needs_sm70 and not runs_on(images, (7, 0)):
            return Check("vllm", "fail", f"{version}; its kernels have no sm_70 code ({archs})", BUILD_VLLM_SM70, data)
        detail = (f"{version}, kernels load ({archs}); tensor-parallel all-reduce: "
                  + ("vLLM's custom one" if custom_allreduce else "NCCL"))
    except ImportError as e:
        if needs_sm70:
            return Check("vllm", "fail", f"{version}; vLLM's kernels do not load: {e}", BUILD_VLLM_SM70, data)
        detail = f"{version}, kernels do not load here ({e})"
    if version.split("+")[0] != PINNED_VLLM:
        return Check("vllm", "fail", detail, f"install vllm=={PINNED_VLLM}", data)
    return Check("vllm", "ok", detail, data=data)


def _load_build_info(module: str, op: str) -> dict:
    import json

    import torch

    importlib.import_module(module)
    namespace, name = op.split("::")
    return json.loads(getattr(getattr(torch.ops, namespace), name)())


def _check_extension(name: str, module: str, op: str, ctx: Context, reinstall: str) -> Check:
    try:
        info = _load_build_info(module, op)
    except Exception as e:  # ImportError, or an undefined symbol from a torch mismatch
        return Check(name, "fail", f"{module} does not load: {e}", reinstall)
    built = {int(a.split("-")[0]) for a in info["cuda_archs"].split(",")}
    detail = f"archs {info['cuda_archs']}, paths {'/'.join(info['paths'])}"
    # PTX of the highest arch lets newer GPUs JIT it; older GPUs than every built arch cannot run.
    unsupported = sorted(c for c in ctx.capabilities if c[0] * 10 + c[1] < min(built))
    if unsupported:
        cc = ", ".join(f"{c[0]}.{c[1]}" for c in unsupported)
        return Check(name, "fail", detail, f"{module} was not built for compute capability {cc}: rebuild with "
                     "a CUDA 12.6/12.8 toolkit and TORCH_CUDA_ARCH_LIST='7.0;7.5'", info)
    return Check(name, "ok", detail, data=info)


def check_sm7x_extension(ctx: Context) -> Check:
    return _check_extension("vllm_sm7x._C", "vllm_sm7x._C", "_C_sm7x::build_info", ctx,
                            "reinstall: pip install --no-build-isolation -e . (see README)")


def check_flash_attn_extension(ctx: Context) -> Check:
    return _check_extension("flash_attn_v100._C", "flash_attn_v100._C", "flash_attn_v100::build_info", ctx,
                            "reinstall: pip install --no-build-isolation -e flash-attention-v100 (see README)")


def check_kernels(ctx: Context) -> Check:
    """Runs the mma smoke GEMM through every arch path the first GPU can run, against torch."""
    import torch

    from vllm_sm7x import ops

    if not ctx.gpus or not torch.cuda.is_available():
        return Check("kernels", "fail", "no usable CUDA device", "see the gpus and torch checks")
    cc = torch.cuda.get_device_capability(0)
    paths = [p for p, need in (("sm70", (7, 0)), ("sm75", (7, 5))) if cc >= need]
    built = ops.build_info()["paths"]
    results = {}
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(37, 45, device="cuda", generator=gen).half()
    b = torch.randn(29, 45, device="cuda", generator=gen).half()
    ref = a.double() @ b.double().T
    for path in (p for p in paths if p in built):
        out = ops.mma_gemm(a, b, path=path)
        torch.cuda.synchronize()
        results[path] = float((out.double() - ref).norm() / ref.norm())
    bad = {p: e for p, e in results.items() if not e < 1e-3}
    detail = ", ".join(f"{p} rel err {e:.1e}" for p, e in results.items()) or "no path ran"
    if bad or not results:
        return Check("kernels", "fail", detail, "the tensor-core smoke GEMM is wrong on this GPU: report it with "
                     "`vllm-sm7x doctor --json`", results)
    return Check("kernels", "ok", detail, data=results)


def check_plugin(ctx: Context) -> Check:
    names = [ep.value for ep in importlib.metadata.entry_points(group="vllm.platform_plugins")]
    if "vllm_sm7x:register" not in names:
        return Check("plugin", "fail", "entry point vllm.platform_plugins -> vllm_sm7x:register not installed",
                     "reinstall vllm-sm7x with pip (entry points come from its metadata)")
    activation = current_activation()
    data = asdict(activation)
    if activation.active:
        return Check("plugin", "ok", f"activates: {activation.reason}", data=data)
    return Check("plugin", "fail", f"stays off: {activation.reason}",
                 "fix the setting named above" if activation.error else
                 "vllm-sm7x only takes over on SM70/SM75 GPUs (or with VLLM_SM7X_EMULATE=sm70|sm75)", data)


# Paths a variable switches: (env variable, what it turns on, its state: on/off or the profile's mode).
SWITCHES = [
    ("VLLM_SM7X_GDN_DECODE", "GDN decode on our kernels", lambda envs: "on" if envs.VLLM_SM7X_GDN_DECODE else "off"),
    ("VLLM_SM7X_GDN_PREFILL", "GDN prefill on our kernels", lambda envs: "on" if envs.VLLM_SM7X_GDN_PREFILL else "off"),
    ("VLLM_SM7X_GDN_CONV_PREFILL", "GDN prefill's conv1d on our kernel (opt-in)",
     lambda envs: "on" if envs.VLLM_SM7X_GDN_CONV_PREFILL else "off"),
    ("VLLM_SM7X_PROFILE", "serving profile", lambda envs: envs.VLLM_SM7X_PROFILE),
]


def check_switches(ctx: Context) -> Check:
    """Which switchable paths this environment runs, so a report says what ran; a value the server
    would refuse fails here first."""
    from vllm_sm7x import envs
    from vllm_sm7x.profiles.engine import profile_mode

    try:
        profile_mode()
        state = {name: state_of(envs) for name, _, state_of in SWITCHES}
    except ValueError as error:
        return Check("switches", "fail", str(error), "fix or unset the variable (docs/environment.md)")
    detail = ", ".join(f"{what} {state[name]} ({name})" for name, what, _ in SWITCHES)
    return Check("switches", "info", detail, data=state)


def check_legacy_env(ctx: Context) -> Check:
    """Variables of the forks users come from, which this plugin does not read (legacy_env)."""
    import os

    from vllm_sm7x.legacy_env import legacy_notes

    notes = legacy_notes(os.environ)
    return Check("legacy-env", "info", " ".join(notes) if notes else "none set")


CHECKS: list[Callable[[Context], Check]] = [
    check_python, check_gpus, check_driver, check_torch, check_vllm,
    check_sm7x_extension, check_flash_attn_extension, check_kernels, check_plugin, check_switches,
    check_legacy_env,
]
# Checks that mean nothing without a GPU; on a GPU-less machine they are reported as skipped.
NEEDS_GPU = {check_driver, check_kernels}


def run_checks() -> list[Check]:
    ctx = Context(gpus=visible_gpus())
    results = []
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        if check in NEEDS_GPU and not ctx.gpus:
            results.append(Check(name, "info", "skipped: no GPU"))
            continue
        try:
            results.append(check(ctx))
        except Exception as e:
            results.append(Check(name, "fail", f"check failed: {type(e).__name__}: {e}",
                                 "see the message; `pip check` may name a broken dependency"))
    return results


def is_ready(checks: list[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


def format_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{c.name:<{width}}  {c.status.upper():<4}  {c.detail}" for c in checks]
    fixes = [f"- {c.name}: {c.fix}" for c in checks if c.fix and c.status in ("fail", "warn")]
    if fixes:
        lines += ["", "To fix:"] + fixes
    lines += ["", "READY" if is_ready(checks) else "NOT READY"]
    return "\n".join(lines)
