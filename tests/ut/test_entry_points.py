"""vLLM finds the plugin through its entry points, picks our platform only when activation says so,
and keeps stock behaviour otherwise."""
import importlib.metadata
import os

import pytest

import vllm_sm7x
from vllm_sm7x import activation
from vllm_sm7x.activation import Activation

ACTIVE = Activation(True, "sm70", True, "emulating SM70 on NVIDIA H100 80GB HBM3 (9.0)")
INACTIVE = Activation(False, None, False, "NVIDIA H100 80GB HBM3 (9.0) is not SM70/SM75")


@pytest.fixture
def decided(monkeypatch):
    """Replaces the per-process decision (the NVML query) with a given one."""

    def set_activation(result):
        monkeypatch.setattr(activation, "current_activation", lambda: result)

    return set_activation


def test_entry_points_are_installed():
    platform = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="vllm.platform_plugins")}
    general = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert platform.get("sm7x") == "vllm_sm7x:register"
    assert general.get("sm7x") == "vllm_sm7x:register_general"


def test_register_returns_platform_only_when_active(decided):
    decided(ACTIVE)
    assert vllm_sm7x.register() == "vllm_sm7x.platform.Sm7xPlatform"
    decided(INACTIVE)
    assert vllm_sm7x.register() is None


def test_general_plugin_is_a_no_op_when_inactive(decided, monkeypatch):
    # vLLM resolves its platform on import: import it while inactive, or an active decision would make
    # it import vllm.platforms.cuda, which needs libcuda (absent on CI).
    pytest.importorskip("vllm")
    import vllm_sm7x.quantization.awq_sm7x  # noqa: F401  (imported by the plugin; it loads the kernels once)
    from vllm_sm7x import ops

    called = []
    monkeypatch.setattr(ops, "load_kernels", lambda: called.append(1))
    decided(INACTIVE)
    vllm_sm7x.register_general()
    assert called == []
    decided(ACTIVE)
    vllm_sm7x.register_general()
    vllm_sm7x.register_general()
    assert called == [1, 1]


def test_vllm_knows_our_variables_and_the_forks_ones_even_when_inactive(decided, monkeypatch):
    # vLLM warns about every VLLM_* variable missing from its table and, with
    # --fail-on-environ-validation, refuses to start.
    vllm_envs = pytest.importorskip("vllm.envs")
    for name in [n for n in os.environ if n.startswith("VLLM_") and n not in vllm_envs.environment_variables]:
        monkeypatch.delenv(name)  # whatever else this shell sets: only ours are under test
    for name in ("VLLM_SM7X_PROFILE", "VLLM_SM7X_DISABLE", "VLLM_FLASH_V100_ENABLE_PAGED_PREFILL"):
        monkeypatch.delitem(vllm_envs.environment_variables, name, raising=False)
        monkeypatch.setenv(name, "off" if name == "VLLM_SM7X_PROFILE" else "1")
    with pytest.raises(ValueError, match="Unknown vLLM environment variable detected: VLLM_SM7X"):
        vllm_envs.validate_environ(hard_fail=True)
    decided(INACTIVE)
    vllm_sm7x.register_general()
    vllm_envs.validate_environ(hard_fail=True)
    assert vllm_envs.environment_variables["VLLM_SM7X_PROFILE"]() == "off"
    assert vllm_envs.environment_variables["VLLM_FLASH_V100_ENABLE_PAGED_PREFILL"]() == "1"
    # vLLM reads every getter when it caches them: a value our own getter refuses must not raise there.
    monkeypatch.setenv("VLLM_SM7X_DISABLE", "2")
    assert vllm_envs.environment_variables["VLLM_SM7X_DISABLE"]() == "2"


def test_vllm_selects_our_platform_when_active(decided):
    from vllm.platforms import resolve_current_platform_cls_qualname

    decided(ACTIVE)
    assert resolve_current_platform_cls_qualname() == "vllm_sm7x.platform.Sm7xPlatform"


def test_vllm_keeps_its_own_choice_when_inactive(decided):
    from vllm.platforms import resolve_current_platform_cls_qualname

    decided(INACTIVE)
    assert resolve_current_platform_cls_qualname() != "vllm_sm7x.platform.Sm7xPlatform"


def test_bad_emulation_value_is_logged_not_swallowed(decided, monkeypatch, caplog):
    monkeypatch.delenv(activation._LOGGED_MARKER, raising=False)
    decided(activation.decide([], emulate="volta"))
    with caplog.at_level("ERROR", logger="vllm.sm7x"):
        assert vllm_sm7x.register() is None
    assert any("VLLM_SM7X_EMULATE='volta' is not understood" in r.getMessage() for r in caplog.records)
