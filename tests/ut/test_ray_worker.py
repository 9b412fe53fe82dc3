"""With `--distributed-executor-backend ray` vLLM's workers are Ray actors: processes Ray starts, not
children of the engine. They must find the plugin through its entry points as the engine does, take
our platform on SM70/SM75 GPUs, and receive our VLLM_SM7X_* settings from the driver. Checked in a
real Ray worker process on the CPU (the GPU list is given, since CI has no GPU)."""
import os

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("vllm")

V100 = {"index": 0, "name": "Tesla V100-SXM2-32GB", "capability": (7, 0)}


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def plugin_in_worker(gpus: list[dict]) -> dict:
    """Runs inside the Ray worker: what vLLM's own loaders see there."""
    from vllm.platforms import resolve_current_platform_cls_qualname
    from vllm.plugins import load_plugins_by_group

    from vllm_sm7x import activation

    activation.visible_gpus = lambda: [activation.Gpu(**gpu) for gpu in gpus]
    activation.current_activation.cache_clear()
    return {"pid": os.getpid(),
            "platform_plugins": sorted(load_plugins_by_group("vllm.platform_plugins")),
            "general_plugins": sorted(load_plugins_by_group("vllm.general_plugins")),
            "platform": resolve_current_platform_cls_qualname(),
            "path": activation.current_activation().path}


def test_a_ray_worker_loads_the_plugin_and_takes_our_platform_on_a_v100(ray_local):
    seen = ray_local.get(ray_local.remote(plugin_in_worker).remote([V100]))
    assert seen["pid"] != os.getpid()
    assert "sm7x" in seen["platform_plugins"] and "sm7x" in seen["general_plugins"]
    assert seen["platform"] == "vllm_sm7x.platform.Sm7xPlatform"
    assert seen["path"] == "sm70"


def test_a_ray_worker_on_a_newer_gpu_keeps_stock_vllm(ray_local):
    h100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": (9, 0)}
    seen = ray_local.get(ray_local.remote(plugin_in_worker).remote([h100]))
    assert seen["platform"] != "vllm_sm7x.platform.Sm7xPlatform"
    assert seen["path"] is None


def test_vllm_copies_our_settings_to_ray_workers(monkeypatch):
    """vLLM's Ray executor sends workers the driver's variables that this list names."""
    from vllm.ray.ray_env import get_env_vars_to_copy

    monkeypatch.setenv("VLLM_SM7X_EMULATE", "sm70")
    monkeypatch.setenv("VLLM_SM7X_AWQ_TUNING", "/tmp/tuning.json")
    copied = get_env_vars_to_copy(destination="workers")
    assert {"VLLM_SM7X_EMULATE", "VLLM_SM7X_AWQ_TUNING"} <= copied
