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
