"""Whether the plugin takes over, decided once per process from the visible GPUs and the
emulation switch. NVML only: CUDA is never initialised here (vLLM forks workers after this runs).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

from vllm_sm7x import envs

logger = logging.getLogger("vllm.sm7x")

# Arch path -> the compute capability it stands for.
PATH_CAPABILITY = {"sm70": (7, 0), "sm75": (7, 5)}
# Child processes (engine core, workers) inherit this, so the activation line is logged once.
_LOGGED_MARKER = "_VLLM_SM7X_ACTIVATION_LOGGED"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int = 0


@dataclass(frozen=True)
class Activation:
    active: bool
    path: str | None  # "sm70" / "sm75" when active
    emulated: bool
    reason: str
    error: bool = False  # the inputs were wrong (bad switch value): the reason says how to fix them


def native_path(capability: tuple[int, int]) -> str | None:
    if (7, 0) <= capability < (7, 5):
        return "sm70"
    if (7, 5) <= capability < (8, 0):
        return "sm75"
    return None


def _describe(gpu: Gpu) -> str:
    return f"{gpu.name} ({gpu.capability[0]}.{gpu.capability[1]})"


def decide(gpus: list[Gpu], emulate: str | None, disabled: bool = False) -> Activation:
    """Pure decision: every visible GPU SM70/SM75, or emulation of one on GPUs at least as new."""
    if disabled:
        return Activation(False, None, False, "VLLM_SM7X_DISABLE=1: plugin turned off, stock vLLM runs")
    if emulate is not None and emulate not in PATH_CAPABILITY:
        return Activation(False, None, False, f"VLLM_SM7X_EMULATE={emulate!r} is not understood: set it to "
                          "sm70 or sm75, or unset it", error=True)
    if not gpus:
        return Activation(False, None, False, "no NVIDIA GPU visible: stock vLLM decides")
    if emulate is not None:
        want = PATH_CAPABILITY[emulate]
        too_old = [g for g in gpus if g.capability < want]
        if too_old:
            return Activation(False, None, False, f"cannot emulate {emulate.upper()} on {_describe(too_old[0])}: "
                              "the emulated GPU must not be newer than the real one", error=True)
        return Activation(True, emulate, True, f"emulating {emulate.upper()} on {_describe(gpus[0])}"
                          + (f" and {len(gpus) - 1} more" if len(gpus) > 1 else ""))
    paths = [native_path(g.capability) for g in gpus]
    if all(p is None for p in paths):
        return Activation(False, None, False, f"{_describe(gpus[0])} is not SM70/SM75: stock vLLM runs "
                          "(set VLLM_SM7X_EMULATE=sm70|sm75 to test the SM7x paths)")
    if any(p is None for p in paths):
        other = gpus[paths.index(None)]
        return Activation(False, None, False, f"mixed GPUs ({_describe(other)} is not SM70/SM75): plugin off; "
                          "pick the SM7x GPUs with CUDA_VISIBLE_DEVICES")
    # Mixed V100 + Turing runs the Volta path, which both can run.
    path = "sm70" if "sm70" in paths else "sm75"
    return Activation(True, path, False, f"{len(gpus)} x {_describe(gpus[0])}: {path.upper()} path")


def _visible_indices(count: int) -> list[int | str]:
    """NVML indices (or UUID prefixes) that CUDA_VISIBLE_DEVICES leaves visible."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    chosen: list[int | str] = []
    for item in visible.split(","):
        item = item.strip()
        if not item:
            break
        if item.lstrip("-").isdigit():
            if int(item) < 0 or int(item) >= count:
                break  # CUDA stops at the first invalid entry
            chosen.append(int(item))
        else:
            chosen.append(item)
    return chosen


def visible_gpus() -> list[Gpu]:
    """The GPUs CUDA will see, through NVML. Empty when there is no driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        gpus = []
        for item in _visible_indices(count):
            if isinstance(item, int):
                handle = pynvml.nvmlDeviceGetHandleByIndex(item)
            else:
                handle = _handle_by_uuid_prefix(pynvml, item, count)
                if handle is None:
                    break
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            gpus.append(Gpu(len(gpus), name, tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)),
                            int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _handle_by_uuid_prefix(pynvml, prefix: str, count: int):
    for i in range(count):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        if uuid.startswith(prefix):
            return handle
    return None


@functools.cache
def current_activation() -> Activation:
    """The decision for this process (cached: GPUs and the switch don't change while it runs)."""
    try:
        disabled = envs.VLLM_SM7X_DISABLE
    except ValueError as error:  # a plugin that cannot tell whether it is wanted stays off, and says why
        return Activation(False, None, False, str(error), error=True)
    return decide(visible_gpus(), envs.VLLM_SM7X_EMULATE, disabled)


def kernel_path() -> str:
    """The arch path kernels should take in this process: the emulated one, else "auto" (the
    kernels pick the device's native path and refuse GPUs that have none)."""
    activation = current_activation()
    return activation.path if activation.emulated else "auto"


def log_activation_once(activation: Activation) -> None:
    if os.environ.get(_LOGGED_MARKER):
        return
    os.environ[_LOGGED_MARKER] = "1"
    if activation.error:
        logger.error("vllm-sm7x: %s", activation.reason)
    elif activation.active:
        logger.info("vllm-sm7x platform active: %s", activation.reason)
        from vllm_sm7x.legacy_env import legacy_notes

        for note in legacy_notes(os.environ):
            logger.warning("vllm-sm7x: %s", note)
