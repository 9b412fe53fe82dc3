"""Test routing for both wheels: tests marked `gpu` are skipped, with the reason, where no CUDA GPU
is usable; everything else runs on the CPU."""
import random

import pytest


def _gpu_skip_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (GPU tests run on the lent H100, see docs/testing.md)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def seed(request) -> int:
    """A fresh seed per test run, printed on failure so a failing draw can be replayed."""
    value = random.SystemRandom().randrange(2**31)
    request.node.user_properties.append(("seed", value))
    print(f"seed={value}")
    return value


@pytest.fixture
def activate(monkeypatch):
    """activate(path, *modules): the plugin as active on that arch path ("sm70" / "sm75"; None: inactive),
    for vllm_sm7x.activation and for the modules that imported its current_activation."""
    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation

    def set_path(path, *modules):
        result = Activation(path is not None, path, path is not None, "test")
        for module in (activation, *modules):
            monkeypatch.setattr(module, "current_activation", lambda: result)

    return set_path


@pytest.fixture
def one_tensor_parallel_rank(monkeypatch):
    """vLLM's weight parameters ask for the tensor-parallel rank: one rank, no process group."""
    import vllm.model_executor.parameter as parameter

    monkeypatch.setattr(parameter, "get_tensor_model_parallel_rank", lambda: 0)
    monkeypatch.setattr(parameter, "get_tensor_model_parallel_world_size", lambda: 1)


@pytest.fixture(scope="module")
def awq_baselines():
    """benchmarks/awq_baselines.py (stock vLLM AWQ baselines; benchmarks/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent / "benchmarks" / "awq_baselines.py"
    spec = importlib.util.spec_from_file_location("awq_baselines", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
