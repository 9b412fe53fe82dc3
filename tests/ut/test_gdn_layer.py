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
    for name in ("QwenGatedDeltaNetAttention", "ChunkGatedDeltaRule"):  # an earlier test's plugin start
        op_registry_oot.pop(name, None)                                 # registers them (both on by default)
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


K_HEADS, V_HEADS, K_DIM, V_DIM, WIDTH = 4, 12, 128, 128, 4
DIM = 2 * K_HEADS * K_DIM + V_HEADS * V_DIM


def fake_layer(layer_cls, monkeypatch, calls, draft=0):
    """What the override reads of a QwenGatedDeltaNetAttention: states (conv state in vLLM's SD layout),
    conv weight, gating parameters; the kernels record their arguments instead of running."""
    import vllm_sm7x.ops.gdn as gdn_ops

    for name in ("gdn_decode", "gdn_verify"):
        monkeypatch.setattr(gdn_ops, name, lambda *args, name=name: calls.append((name, args)))
    monkeypatch.setattr("vllm.model_executor.layers.mamba.mamba_utils.is_conv_state_dim_first", lambda: False)
    layer = types.SimpleNamespace(activation="silu", head_k_dim=K_DIM, prefix="layers.0.linear_attn",
                                  kv_cache=[torch.zeros(5, WIDTH - 1 + draft, DIM, dtype=torch.float16),
                                            torch.zeros(5, V_HEADS, V_DIM, K_DIM)],
                                  conv1d=types.SimpleNamespace(weight=torch.zeros(DIM, 1, WIDTH), bias=None),
                                  A_log=torch.zeros(V_HEADS), dt_bias=torch.zeros(V_HEADS))
    layer._sm7x_states = types.MethodType(layer_cls._sm7x_states, layer)
    return layer


def inputs(padded):
    """(qkv, b, a, out) in the layer's argument order; a and b are distinct tensors."""
    qkv = torch.zeros(padded, DIM + 64)[:, :DIM]  # a strided slice of the fused projection, as in vLLM
    return qkv, torch.zeros(padded, V_HEADS), torch.ones(padded, V_HEADS), torch.zeros(padded, V_HEADS, V_DIM)


def plain_decode_step(layer, monkeypatch, tokens, padded):
    """vLLM's GDN metadata of a decode-only step (one token per sequence, no MTP), in the forward context."""
    metadata = types.SimpleNamespace(spec_sequence_masks=None, num_prefills=0, num_decodes=tokens,
                                     num_actual_tokens=tokens,
                                     non_spec_state_indices_tensor=torch.arange(padded, dtype=torch.int32))
    context = types.SimpleNamespace(attn_metadata={layer.prefix: metadata})
    monkeypatch.setattr("vllm.forward_context.get_forward_context", lambda: context)
    return metadata


@pytest.mark.parametrize("packed_decode", [True, False])
def test_decode_step_passes_vllms_tensors_to_the_kernels(registry, monkeypatch, packed_decode):
    # VLLM_ENABLE_FLA_PACKED_RECURRENT_DECODE=0 (the layer's enable_packed_recurrent_decode) turns off
    # only vLLM's routing of decode to its packed kernel: ours still take the step.
    from vllm_sm7x.mamba.gdn import register_gdn_decode

    register_gdn_decode()
    layer_cls, calls = registry["QwenGatedDeltaNetAttention"], []
    layer = fake_layer(layer_cls, monkeypatch, calls)
    layer.enable_packed_recurrent_decode = packed_decode
    tokens, padded = 3, 8
    plain_decode_step(layer, monkeypatch, tokens, padded)
    qkv, b, a, out = inputs(padded)
    layer_cls._forward_core(layer, qkv, b, a, out)

    ((name, args),) = calls
    (qkv_arg, a_arg, b_arg, conv_state, weight, bias, a_log, dt_bias, state, indices, out_arg, heads, scale) = args
    assert name == "gdn_decode"
    assert qkv_arg.shape == (tokens, DIM) and qkv_arg.data_ptr() == qkv.data_ptr()  # in place, no copy
    assert a_arg.shape == b_arg.shape == (tokens, V_HEADS) and out_arg.shape == (tokens, V_HEADS, V_DIM)
    # Decay input a and beta input b in the kernel's order (the layer's own signature is (qkv, b, a)).
    assert (a_arg.data_ptr(), b_arg.data_ptr(), out_arg.data_ptr()) == (a.data_ptr(), b.data_ptr(), out.data_ptr())
    assert conv_state.shape == (5, DIM, WIDTH - 1) and conv_state.stride(1) == 1  # transposed view
    assert weight.shape == (DIM, WIDTH) and state is layer.kv_cache[1] and indices.shape == (tokens,)
    assert heads == K_HEADS and scale == pytest.approx(K_DIM ** -0.5)


def test_mtp_verification_batches_go_to_the_kernels_and_mixed_ones_to_vllm(registry, monkeypatch):
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    from vllm_sm7x.mamba.gdn import register_gdn_decode

    register_gdn_decode()
    layer_cls, calls, draft, seqs = registry["QwenGatedDeltaNetAttention"], [], 3, 2
    layer = fake_layer(layer_cls, monkeypatch, calls, draft)
    metadata = types.SimpleNamespace(spec_sequence_masks=torch.ones(seqs, dtype=torch.bool), num_prefills=0,
                                     num_decodes=0, num_spec_decodes=seqs, num_actual_tokens=seqs * (1 + draft),
                                     spec_state_indices_tensor=torch.arange(1, 13, dtype=torch.int32).view(3, 4),
                                     num_accepted_tokens=torch.tensor([2, 1, 1], dtype=torch.int32),
                                     spec_query_start_loc=torch.tensor([0, 4, 8, 8], dtype=torch.int32))
    context = types.SimpleNamespace(attn_metadata={layer.prefix: metadata})
    monkeypatch.setattr("vllm.forward_context.get_forward_context", lambda: context)
    qkv, b, a, out = inputs(16)
    layer_cls._forward_core(layer, qkv, b, a, out)
    ((name, args),) = calls
    assert name == "gdn_verify"
    indices, accepted, cu_seqlens, out_arg = args[9], args[10], args[11], args[12]
    assert indices.shape == (seqs, 1 + draft) and accepted.tolist() == [2, 1] and cu_seqlens.tolist() == [0, 4, 8]
    assert args[3].shape == (5, DIM, WIDTH - 1 + draft) and out_arg.shape == (8, V_HEADS, V_DIM)
    assert (args[0].data_ptr(), args[1].data_ptr(), args[2].data_ptr()) == (qkv.data_ptr(), a.data_ptr(),
                                                                            b.data_ptr())

    # A batch with prefill tokens keeps vLLM's path.
    metadata.num_prefills = 1
    fallback = []
    monkeypatch.setattr(QwenGatedDeltaNetAttention, "_forward_core", lambda self, *args: fallback.append(args))
    layer_cls._forward_core(layer, qkv, b, a, out)
    assert len(fallback) == 1 and len(calls) == 1


@pytest.mark.parametrize("unsupported", ["conv state fp32", "ssm state bf16", "activation", "misaligned pages"])
def test_layers_the_kernels_do_not_take_keep_vllms_decode(registry, monkeypatch, unsupported):
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    from vllm_sm7x.mamba.gdn import register_gdn_decode

    register_gdn_decode()
    layer_cls, calls, fallback = registry["QwenGatedDeltaNetAttention"], [], []
    layer = fake_layer(layer_cls, monkeypatch, calls)
    conv_state, ssm_state = layer.kv_cache
    if unsupported == "conv state fp32":
        layer.kv_cache = [conv_state.float(), ssm_state]
    elif unsupported == "ssm state bf16":
        layer.kv_cache = [conv_state, ssm_state.bfloat16()]
    elif unsupported == "misaligned pages":  # a page stride of 4 * k + 2 floats: not 16-byte vectors
        pages = torch.zeros(5 * (V_HEADS * V_DIM * K_DIM + 2))
        layer.kv_cache = [conv_state, pages.as_strided(ssm_state.shape, (V_HEADS * V_DIM * K_DIM + 2,
                                                                        *ssm_state.stride()[1:]))]
    else:
        layer.activation = "swish"
    monkeypatch.setattr(QwenGatedDeltaNetAttention, "_forward_core", lambda self, *args: fallback.append(args))
    plain_decode_step(layer, monkeypatch, tokens=2, padded=4)
    layer_cls._forward_core(layer, *inputs(4))
    assert len(fallback) == 1 and not calls


def test_profile_run_without_metadata_or_cache_keeps_vllms_path(registry, monkeypatch):
    """vLLM's memory-profiling forward has no attention metadata and binds no KV cache yet: the
    override must not touch the cache then (it raised AttributeError before 64e65df)."""
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    from vllm_sm7x.mamba.gdn import register_gdn_decode

    register_gdn_decode()
    layer_cls, calls = registry["QwenGatedDeltaNetAttention"], []
    layer = fake_layer(layer_cls, monkeypatch, calls)
    del layer.kv_cache  # not bound yet
    monkeypatch.setattr("vllm.forward_context.get_forward_context", lambda: types.SimpleNamespace(attn_metadata=None))
    fallback = []
    monkeypatch.setattr(QwenGatedDeltaNetAttention, "_forward_core", lambda self, *args: fallback.append(args))
    layer_cls._forward_core(layer, *inputs(4))
    assert len(fallback) == 1 and calls == []


def test_prefill_rule_registered_once_in_place_of_vllms(registry):
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import ChunkGatedDeltaRule

    from vllm_sm7x.mamba.gdn import register_gdn_prefill

    assert register_gdn_prefill() is True
    assert register_gdn_prefill() is False
    replacement = registry["ChunkGatedDeltaRule"]
    assert issubclass(replacement, ChunkGatedDeltaRule) and replacement is not ChunkGatedDeltaRule


def prefill_call(dtype, k_dim=K_DIM, tokens=7):
    q = torch.zeros(1, tokens, K_HEADS, k_dim, dtype=dtype)
    v = torch.zeros(1, tokens, V_HEADS, V_DIM, dtype=dtype)
    g, beta = torch.zeros(1, tokens, V_HEADS), torch.zeros(1, tokens, V_HEADS)
    return q, q.clone(), v, g, beta, torch.zeros(2, V_HEADS, V_DIM, k_dim), torch.tensor([0, 3, tokens])


@pytest.mark.parametrize("dtype, k_dim, state_dtype, ours", [
    (torch.float16, 128, torch.float32, True), (torch.float16, 64, torch.float16, True),
    (torch.bfloat16, 128, torch.float32, False), (torch.float16, 256, torch.float32, False),
    (torch.float16, 128, torch.bfloat16, False)])  # --mamba-ssm-cache-dtype bfloat16
def test_prefill_rule_sends_what_the_kernel_takes_and_hands_back_the_rest(registry, monkeypatch, dtype, k_dim,
                                                                          state_dtype, ours):
    import vllm_sm7x.ops.gdn as gdn_ops
    from vllm_sm7x.mamba.gdn import register_gdn_prefill

    register_gdn_prefill()
    rule_cls, calls = registry["ChunkGatedDeltaRule"], []
    result = torch.ones(1, 7, V_HEADS, V_DIM), torch.ones(2, V_HEADS, V_DIM, k_dim)
    monkeypatch.setattr(gdn_ops, "chunk_gated_delta_rule", lambda *a, **kw: calls.append(("ours", a, kw)) or result)
    rule = types.SimpleNamespace(forward_native=lambda *a: calls.append(("vllm", a, {})) or result)
    q, k, v, g, beta, state, cu_seqlens = prefill_call(dtype, k_dim)
    state = state.to(state_dtype)
    buffer = torch.zeros(7, V_HEADS, V_DIM)
    o, final = rule_cls.forward_sm7x(rule, q, k, v, g, beta, state, True, cu_seqlens, None, None, False, buffer)

    ((who, args, kwargs),) = calls
    assert who == ("ours" if ours else "vllm")
    if ours:
        assert args[0] is q and args[2] is v and kwargs["initial_state"] is state
        assert kwargs["cu_seqlens"] is cu_seqlens and kwargs["use_qk_l2norm_in_kernel"] is False
        assert torch.equal(buffer, torch.ones_like(buffer)), "the caller's output buffer was not filled"
        assert o is result[0] and final is result[1]
        calls.clear()
        assert rule_cls.forward_sm7x(rule, q, k, v, g, beta, state, False, cu_seqlens)[1] is None
