"""The Gated DeltaNet layer override as vLLM sees it: registered once as the out-of-tree replacement
of QwenGatedDeltaNetAttention, and its decode step hands vLLM's tensors to our kernels unchanged
(the kernels' arithmetic is checked on the GPU: tests/gpu/test_gdn_decode.py)."""
import types

import pytest
import torch


@pytest.fixture
def registry():
    pytest.importorskip("vllm")
    from vllm.model_executor.custom_op import op_registry_oot

    saved = dict(op_registry_oot)
    yield op_registry_oot
    op_registry_oot.clear()
    op_registry_oot.update(saved)


def test_registered_once_as_the_layers_replacement(registry):
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    from vllm_sm7x.mamba.gdn import register_gdn_decode

    assert register_gdn_decode() is True
    assert register_gdn_decode() is False
    replacement = registry["QwenGatedDeltaNetAttention"]
    assert issubclass(replacement, QwenGatedDeltaNetAttention) and replacement is not QwenGatedDeltaNetAttention


def test_decode_step_passes_vllms_tensors_to_the_kernels(registry, monkeypatch):
    import vllm_sm7x.ops.gdn as gdn_ops
    from vllm_sm7x.mamba.gdn import register_gdn_decode

    register_gdn_decode()
    layer_cls = registry["QwenGatedDeltaNetAttention"]
    calls = []
    monkeypatch.setattr(gdn_ops, "gdn_decode", lambda *args: calls.append(args))
    monkeypatch.setattr("vllm.model_executor.layers.mamba.mamba_utils.is_conv_state_dim_first", lambda: False)
    k_heads, v_heads, k_dim, v_dim, width, tokens, padded = 4, 12, 128, 128, 4, 3, 8
    dim = 2 * k_heads * k_dim + v_heads * v_dim
    conv_stored = torch.zeros(5, width - 1, dim, dtype=torch.float16)  # vLLM's SD layout
    ssm_state = torch.zeros(5, v_heads, v_dim, k_dim)
    layer = types.SimpleNamespace(activation="silu", kv_cache=[conv_stored, ssm_state], head_k_dim=k_dim,
                                  conv1d=types.SimpleNamespace(weight=torch.zeros(dim, 1, width), bias=None),
                                  A_log=torch.zeros(v_heads), dt_bias=torch.zeros(v_heads))
    metadata = types.SimpleNamespace(num_actual_tokens=tokens,
                                     non_spec_state_indices_tensor=torch.arange(padded, dtype=torch.int32))
    qkv, a, b = torch.zeros(padded, dim + 64)[:, :dim], torch.zeros(padded, v_heads), torch.zeros(padded, v_heads)
    out = torch.zeros(padded, v_heads, v_dim)
    layer_cls._forward_core_decode_non_spec(layer, qkv, b, a, out, metadata)

    (args,) = calls
    (qkv_arg, a_arg, b_arg, conv_state, weight, bias, a_log, dt_bias, state, indices, out_arg, heads, scale) = args
    assert qkv_arg.shape == (tokens, dim) and qkv_arg.data_ptr() == qkv.data_ptr()  # in place, no copy
    assert a_arg.shape == b_arg.shape == (tokens, v_heads) and out_arg.shape == (tokens, v_heads, v_dim)
    assert conv_state.shape == (5, dim, width - 1) and conv_state.stride(1) == 1  # transposed view
    assert weight.shape == (dim, width) and state is ssm_state and indices.shape == (tokens,)
    assert heads == k_heads and scale == pytest.approx(k_dim ** -0.5)
