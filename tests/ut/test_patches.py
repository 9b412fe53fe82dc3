"""The vLLM patches: each one applies where its problem exists and is idempotent."""
import importlib
import subprocess
import sys

import pytest

PROBE = """
import importlib
try:
    importlib.import_module("vllm.vllm_flash_attn")
    print("IMPORTS-WITHOUT-PATCH")
except ImportError as e:
    print("FAILS:", e)
from vllm_sm7x.patch import apply_all
first, second = apply_all(), apply_all()
package = importlib.import_module("vllm.vllm_flash_attn")
from vllm.vllm_flash_attn.flash_attn_interface import is_fa_version_supported
print("APPLIED", first, second, package.FA2_AVAILABLE or package.FA3_AVAILABLE, callable(package.flash_attn_varlen_func))
"""


def test_flash_attn_package_imports_without_its_kernels():
    # A fresh interpreter: the probe needs an import of vllm.vllm_flash_attn that has not happened yet.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    applied = next(line for line in lines if line.startswith("APPLIED")).split(maxsplit=1)[1]
    profile = "'engine_profile.apply_profile_at_engine_start'"  # always applies once: it wraps a method
    if any(line.startswith("FAILS:") for line in lines):  # no FA kernels here (no GPU driver, or an SM7x build)
        assert applied == f"['vllm_flash_attn.allow_missing_extensions', {profile}] [] False True"
    else:
        assert applied.startswith(f"[{profile}] []")


def test_patch_index_documents_every_patch():
    patch = importlib.import_module("vllm_sm7x.patch")
    for name in patch.PATCHES:
        assert f"`{name}`" in patch.__doc__


def test_moe_routing_goes_to_our_kernel_on_sm70_only(monkeypatch):
    import vllm._custom_ops as ops

    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation
    from vllm_sm7x.patch import moe_routing

    def stock(*args, **kwargs):
        raise AssertionError("vLLM's _moe_C kernel called")

    monkeypatch.setattr(ops, "topk_softmax", stock)  # vLLM's own is put back after the test
    for path in ("sm75", None):
        monkeypatch.setattr(activation, "current_activation", lambda: Activation(path is not None, path, True, ""))
        assert not moe_routing.topk_softmax_without_moe_c() and ops.topk_softmax is stock
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm70", True, ""))
    assert moe_routing.topk_softmax_without_moe_c() and ops.topk_softmax is moe_routing.topk_softmax
    assert not moe_routing.topk_softmax_without_moe_c()  # idempotent
    with pytest.raises(NotImplementedError, match="score correction bias"):
        ops.topk_softmax(None, None, None, None, True, e_score_correction_bias=object())
