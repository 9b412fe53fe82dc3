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
    # These three always apply once: they wrap a function.
    wrappers = ("'engine_profile.apply_profile_at_engine_start', 'marlin_moe_scales.permute_for_each_gemms_k', "
                "'gdn_ba_proj.replicate_ba_proj_for_awq_sm7x'")
    if any(line.startswith("FAILS:") for line in lines):  # no FA kernels here (no GPU driver, or an SM7x build)
        assert applied == f"['vllm_flash_attn.allow_missing_extensions', {wrappers}] [] False True"
    else:
        assert applied.startswith(f"[{wrappers}] []")


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


def test_repetition_penalties_run_in_pytorch_on_sm70_only(monkeypatch):
    import torch
    import vllm._custom_ops as ops

    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation
    from vllm_sm7x.patch import sampling_penalties

    def stock(*args):
        raise AssertionError("vLLM's _C kernel called")

    monkeypatch.setattr(ops, "apply_repetition_penalties", stock)  # an earlier plugin start may have patched it
    for path in ("sm75", None):
        monkeypatch.setattr(activation, "current_activation", lambda: Activation(path is not None, path, True, ""))
        assert not sampling_penalties.repetition_penalties_without_c() and ops.apply_repetition_penalties is stock
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm70", True, ""))
    assert sampling_penalties.repetition_penalties_without_c()
    assert ops.apply_repetition_penalties is ops.apply_repetition_penalties_torch
    assert not sampling_penalties.repetition_penalties_without_c()  # idempotent
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    ops.apply_repetition_penalties(logits, seen, torch.zeros_like(seen), torch.tensor([2.0]))
    assert logits.tolist() == [[1.0, -4.0, 1.0]]


def test_marlin_moe_gate_up_scales_get_the_layout_of_the_hidden_size_k(monkeypatch):
    """Qwen3.6-35B-A3B at TP4: 128-wide experts, group 128, hidden 2048 -> the gate/up weight has 16
    scale groups along K, so Marlin reads the grouped layout; vLLM 0.26 asks for K = 128 (the expert
    width), which gives the per-channel one. Through the patch the same call yields the grouped layout,
    and calls that already pass the right K are unchanged."""
    import torch
    from vllm.model_executor.layers.fused_moe.oracle import int_wna16
    from vllm.model_executor.layers.quantization.utils.marlin_utils import (marlin_moe_permute_scales,
                                                                            marlin_permute_scales)

    from vllm_sm7x.patch import marlin_moe_scales

    # vLLM's own function (another test may have applied the patch in this process); restored after.
    monkeypatch.setattr(int_wna16, "marlin_moe_permute_scales", marlin_moe_permute_scales)
    experts, hidden, width, group = 3, 2048, 128, 128
    gate_up = torch.randn(experts, hidden // group, 2 * width)
    down = torch.randn(experts, width // group, hidden)
    stock_gate_up = int_wna16.marlin_moe_permute_scales(gate_up, width, 2 * width, group)
    assert marlin_moe_scales.permute_for_each_gemms_k() and not marlin_moe_scales.permute_for_each_gemms_k()
    fixed_gate_up = int_wna16.marlin_moe_permute_scales(gate_up, width, 2 * width, group)
    grouped = torch.stack([marlin_permute_scales(s, hidden, 2 * width, group) for s in gate_up])
    assert torch.equal(fixed_gate_up, grouped) and not torch.equal(stock_gate_up, grouped)
    assert torch.equal(int_wna16.marlin_moe_permute_scales(down, width, hidden, group),
                       torch.stack([marlin_permute_scales(s, width, hidden, group) for s in down]))
    channelwise = torch.randn(experts, 1, 2 * width)
    assert torch.equal(int_wna16.marlin_moe_permute_scales(channelwise, hidden, 2 * width, -1),
                       torch.stack([marlin_permute_scales(s, hidden, 2 * width, -1) for s in channelwise]))


def test_gdn_prefill_conv_goes_to_our_kernel_only_when_asked_and_only_for_calls_it_takes(monkeypatch):
    import torch
    from vllm.model_executor.layers.mamba.gdn import qwen_gdn_linear_attn as gdn_module

    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation
    from vllm_sm7x.patch import gdn_conv_prefill

    calls = []

    def stock(*args, **kwargs):
        calls.append(kwargs)
        return "vllm's"

    monkeypatch.setattr(gdn_module, "causal_conv1d_fn", stock)  # vLLM's own is put back after the test
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm75", True, ""))
    monkeypatch.delenv("VLLM_SM7X_GDN_CONV_PREFILL", raising=False)  # opt-in
    assert not gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel() and gdn_module.causal_conv1d_fn is stock
    monkeypatch.setenv("VLLM_SM7X_GDN_CONV_PREFILL", "1")
    assert gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel()
    assert gdn_module.causal_conv1d_fn.sm7x_original is stock
    assert not gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel()  # idempotent

    # Tensors our kernel does not take (here: on the CPU) go to vLLM's, every argument passed on.
    x, weight = torch.zeros(8, 5, dtype=torch.float16), torch.zeros(8, 4, dtype=torch.float16)
    states = torch.zeros(2, 8, 3, dtype=torch.float16)
    assert gdn_module.causal_conv1d_fn(x, weight, None, states, torch.tensor([0, 5]), metadata="batch") == "vllm's"
    assert calls[-1]["metadata"] == "batch" and calls[-1]["activation"] == "silu"
    # Mamba-style prefix caching (block bookkeeping) is never ours, whatever the tensors.
    assert not gdn_conv_prefill.takes(x, weight, states, "silu", prefix_caching=True)


def test_gdn_mixed_step_recurrence_goes_to_our_kernel_with_our_decode_and_only_for_calls_it_takes(monkeypatch):
    import torch
    from vllm.model_executor.layers.mamba.gdn import qwen_gdn_linear_attn as gdn_module

    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation
    from vllm_sm7x.patch import gdn_recurrent

    calls = []

    def stock(*args, **kwargs):
        calls.append(kwargs)
        return "vllm's"

    monkeypatch.setattr(gdn_module, "fused_sigmoid_gating_delta_rule_update", stock)  # put back after the test
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm75", True, ""))
    monkeypatch.setenv("VLLM_SM7X_GDN_DECODE", "0")
    assert not gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel()
    assert gdn_module.fused_sigmoid_gating_delta_rule_update is stock
    monkeypatch.delenv("VLLM_SM7X_GDN_DECODE")  # on by default
    assert gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel()
    assert gdn_module.fused_sigmoid_gating_delta_rule_update.sm7x_original is stock
    assert not gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel()  # idempotent

    # Tensors our kernel does not take (here: on the CPU) go to vLLM's, every argument passed on.
    q = torch.zeros(1, 2, 4, 128, dtype=torch.float16)
    v = torch.zeros(1, 2, 12, 128, dtype=torch.float16)
    ab = torch.zeros(2, 12, dtype=torch.float16)
    state = torch.zeros(5, 12, 128, 128)
    cu, indices = torch.tensor([0, 1, 2], dtype=torch.int32), torch.tensor([3, 4], dtype=torch.int32)
    args = dict(A_log=torch.zeros(12), a=ab, b=ab, dt_bias=ab[0], q=q, k=q, v=v, initial_state=state,
                inplace_final_state=True, cu_seqlens=cu, ssm_state_indices=indices, use_qk_l2norm_in_kernel=True)
    assert gdn_module.fused_sigmoid_gating_delta_rule_update(**args) == "vllm's"
    assert calls[-1]["cu_seqlens"] is cu and calls[-1]["use_qk_l2norm_in_kernel"] is True
    # What decides, tensors aside: vLLM's continuous-batching form, and one token per sequence unless
    # the call carries MTP's accepted counts.
    form = {key: args[key] for key in ("A_log", "a", "b", "dt_bias", "q", "k", "v")}
    rest = dict(beta=1.0, threshold=20.0, initial_state=state, inplace_final_state=True, cu_seqlens=cu,
                ssm_state_indices=indices, num_accepted_tokens=None, use_qk_l2norm_in_kernel=True, is_kda=False)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert gdn_recurrent.takes(**form, **rest)
    assert not gdn_recurrent.takes(**form, **{**rest, "use_qk_l2norm_in_kernel": False})
    assert not gdn_recurrent.takes(**form, **{**rest, "inplace_final_state": False})
    assert not gdn_recurrent.takes(**form, **{**rest, "cu_seqlens": torch.tensor([0, 2], dtype=torch.int32)})
    assert not gdn_recurrent.takes(**form, **{**rest, "is_kda": True})
    verify = {**rest, "cu_seqlens": torch.tensor([0, 2], dtype=torch.int32),
              "ssm_state_indices": torch.tensor([[3, 4]], dtype=torch.int32),
              "num_accepted_tokens": torch.tensor([1], dtype=torch.int32)}
    assert gdn_recurrent.takes(**form, **verify)


def test_gdn_ba_projection_stays_whole_under_our_awq_config(monkeypatch):
    """Qwen3.6-27B at TP4 would give in_proj_b and in_proj_a 12 columns per GPU, cutting AWQ's packed
    8-column words: like vLLM's own AWQ config, ours keeps the projection whole (Qwen3.5's separate b
    and a only; Qwen3-Next's interleaved one stays split)."""
    import types

    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    from vllm_sm7x.patch import gdn_ba_proj
    from vllm_sm7x.quantization.awq_sm7x import AwqSm7xConfig

    vllms = QwenGatedDeltaNetAttention.maybe_disable_tp  # unwrapped: an earlier plugin start may have patched it
    monkeypatch.setattr(QwenGatedDeltaNetAttention, "maybe_disable_tp", getattr(vllms, "sm7x_original", vllms))
    qwen35, qwen3_next = (types.SimpleNamespace(gqa_interleaved_layout=layout) for layout in (False, True))
    awq = AwqSm7xConfig(128)
    assert not QwenGatedDeltaNetAttention.maybe_disable_tp(qwen35, awq)
    assert gdn_ba_proj.replicate_ba_proj_for_awq_sm7x()
    assert not gdn_ba_proj.replicate_ba_proj_for_awq_sm7x()  # idempotent
    assert QwenGatedDeltaNetAttention.maybe_disable_tp(qwen35, awq)
    assert not QwenGatedDeltaNetAttention.maybe_disable_tp(qwen3_next, awq)
    assert not QwenGatedDeltaNetAttention.maybe_disable_tp(qwen35, None)
