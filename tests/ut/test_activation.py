"""When the plugin takes over: the pure decision, CUDA_VISIBLE_DEVICES and the NVML query (faked)."""
import sys
import types

import pytest

from vllm_sm7x import activation
from vllm_sm7x.activation import Gpu, decide
from vllm_sm7x.legacy_env import LEGACY_VARIABLES

V100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))
T4 = Gpu(0, "Tesla T4", (7, 5))
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0))
A100 = Gpu(1, "NVIDIA A100-SXM4-80GB", (8, 0))


@pytest.mark.parametrize("gpus, path", [([V100], "sm70"), ([T4], "sm75"), ([V100, V100, V100, V100], "sm70"),
                                        ([T4, V100], "sm70")])
def test_activates_natively_on_volta_and_turing(gpus, path):
    result = decide(gpus, emulate=None)
    assert result.active and result.path == path and not result.emulated


@pytest.mark.parametrize("gpus", [[H100], [A100], [V100, A100]])
def test_stays_off_unless_every_gpu_is_sm7x(gpus):
    result = decide(gpus, emulate=None)
    assert not result.active and result.path is None and not result.error


def test_stays_off_without_gpus_even_when_emulating():
    assert not decide([], emulate=None).active
    assert not decide([], emulate="sm70").active


@pytest.mark.parametrize("path", ["sm70", "sm75"])
def test_emulation_activates_on_newer_gpu(path):
    result = decide([H100], emulate=path)
    assert result.active and result.emulated and result.path == path
    assert result.reason.startswith(f"emulating {path.upper()} on NVIDIA H100")


def test_emulating_a_newer_gpu_than_the_real_one_is_an_error():
    result = decide([V100], emulate="sm75")
    assert not result.active and result.error and "cannot emulate SM75" in result.reason


def test_unknown_emulation_value_is_an_error_that_names_the_fix():
    result = decide([H100], emulate="sm80")
    assert not result.active and result.error
    assert "'sm80'" in result.reason and "sm70 or sm75" in result.reason


def test_disable_switch_wins():
    assert not decide([V100], emulate=None, disabled=True).active
    assert not decide([H100], emulate="sm70", disabled=True).active


def test_on_off_switches_read_words_and_refuse_anything_else(monkeypatch):
    from vllm_sm7x import envs

    for value, on in (("on", True), (" Yes ", True), ("1", True), ("off", False), ("0", False), ("", False)):
        monkeypatch.setenv("VLLM_SM7X_STOCK_AWQ", value)
        assert envs.VLLM_SM7X_STOCK_AWQ is on
    monkeypatch.setenv("VLLM_SM7X_GDN_DECODE", "")
    assert envs.VLLM_SM7X_GDN_DECODE is True  # empty: the default
    monkeypatch.setenv("VLLM_SM7X_GDN_DECODE", "maybe")
    with pytest.raises(ValueError, match="VLLM_SM7X_GDN_DECODE='maybe' is not understood: set it to 1"):
        envs.VLLM_SM7X_GDN_DECODE


def test_a_disable_switch_that_cannot_be_read_keeps_the_plugin_off_and_says_why(monkeypatch):
    monkeypatch.setenv("VLLM_SM7X_DISABLE", "please")
    activation.current_activation.cache_clear()
    try:
        result = activation.current_activation()
    finally:
        activation.current_activation.cache_clear()
    assert not result.active and result.error and "VLLM_SM7X_DISABLE='please'" in result.reason


def test_env_switch_is_normalised(monkeypatch):
    from vllm_sm7x import envs

    monkeypatch.setenv("VLLM_SM7X_EMULATE", " SM70 ")
    assert envs.VLLM_SM7X_EMULATE == "sm70"
    monkeypatch.setenv("VLLM_SM7X_EMULATE", "")
    assert envs.VLLM_SM7X_EMULATE is None


class FakeNvml(types.ModuleType):
    """pynvml with a fixed list of GPUs (name, capability, uuid)."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices, fail_init=False):
        super().__init__("pynvml")
        self.devices, self.fail_init, self.initialised = devices, fail_init, 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.devices[h][0]

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self.devices[h][1]

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=32 << 30)

    def nvmlDeviceGetUUID(self, h):
        return self.devices[h][2]


@pytest.fixture
def nvml(monkeypatch):
    def install(devices, fail_init=False):
        fake = FakeNvml(devices, fail_init)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return install


MACHINE = [("NVIDIA H100", (9, 0), "GPU-aaaa"), ("Tesla V100", (7, 0), "GPU-bbbb"), ("Tesla V100", (7, 0), "GPU-cccc")]


def test_visible_gpus_lists_every_gpu_and_shuts_nvml_down(nvml, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = nvml(MACHINE)
    gpus = activation.visible_gpus()
    assert [g.capability for g in gpus] == [(9, 0), (7, 0), (7, 0)]
    assert all(g.memory_bytes == 32 << 30 for g in gpus)  # what `doctor MODEL` plans with
    assert fake.initialised == 0


@pytest.mark.parametrize("visible, names", [("1,2", ["Tesla V100", "Tesla V100"]), ("2", ["Tesla V100"]),
                                            ("GPU-bbbb", ["Tesla V100"]), ("", []), ("1,7,0", ["Tesla V100"]),
                                            ("GPU-zzzz,0", [])])
def test_visible_gpus_follow_cuda_visible_devices(nvml, monkeypatch, visible, names):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    nvml(MACHINE)
    assert [g.name for g in activation.visible_gpus()] == names


def test_hiding_the_h100_activates_the_plugin_on_the_v100s(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    nvml(MACHINE)
    assert decide(activation.visible_gpus(), emulate=None).path == "sm70"


def test_no_driver_means_no_gpus(nvml):
    nvml([], fail_init=True)
    assert activation.visible_gpus() == []


def test_activation_is_logged_once_per_process_tree(monkeypatch, caplog):
    monkeypatch.delenv(activation._LOGGED_MARKER, raising=False)
    for name in LEGACY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    result = decide([H100], emulate="sm70")
    with caplog.at_level("INFO", logger="vllm.sm7x"):
        activation.log_activation_once(result)
        activation.log_activation_once(result)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["vllm-sm7x platform active: emulating SM70 on NVIDIA H100 80GB HBM3 (9.0)"]
