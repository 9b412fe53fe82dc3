"""The awq_sm7x quantization config: when it claims a checkpoint, what it refuses, and the linear
method's weight handling up to the kernel call (on the CPU)."""
import re
from pathlib import Path

import pytest
import torch


awq_sm7x = pytest.importorskip("vllm_sm7x.quantization.awq_sm7x")
from vllm_sm7x.quantization.awq_format import dequantize_awq, dequantize_kernel_layout, quantize_awq  # noqa: E402

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}


pytestmark = pytest.mark.usefixtures("one_tensor_parallel_rank")


def test_registered_with_vllm():
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config

    assert "awq_sm7x" in QUANTIZATION_METHODS
    assert get_quantization_config("awq_sm7x") is awq_sm7x.AwqSm7xConfig


@pytest.mark.parametrize("user_quant", [None, "awq", "awq_marlin", "auto_awq", "marlin", "awq_sm7x"])
def test_claims_awq_checkpoints_on_our_platform(activate, user_quant):
    activate("sm70", awq_sm7x)
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method(AWQ, user_quant) == "awq_sm7x"


def test_leaves_other_gpus_and_other_formats_alone(activate):
    activate(None, awq_sm7x)
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method(AWQ, None) is None
    activate("sm70", awq_sm7x)
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method({"quant_method": "gptq"}, None) is None
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method(AWQ, "fp8") is None


def test_runs_fp16_from_sm70():
    assert awq_sm7x.AwqSm7xConfig.get_min_capability() == 70
    assert awq_sm7x.AwqSm7xConfig.get_supported_act_dtypes() == [torch.float16]


@pytest.mark.parametrize("change, message", [({"bits": 8}, "8-bit weights is not supported on SM70/SM75: only 4-bit AWQ is; use a 4-bit export"),
                                             ({"group_size": 256}, "group size 256 is not supported"),
                                             ({"group_size": -1}, "group size -1 is not supported"),
                                             ({"zero_point": False}, "without zero points"),
                                             ({"version": "gemv"}, "version 'gemv' is not supported"),
                                             ({"desc_act": True}, r"act-order \(desc_act: true"),
                                             ({"lm_head": True}, "quantized lm_head")])
def test_unsupported_checkpoints_are_refused_with_the_rule(change, message):
    with pytest.raises(ValueError, match=message):
        awq_sm7x.AwqSm7xConfig.from_config({**AWQ, **change})


def make_layer(method, K, N):
    layer = torch.nn.Module()
    method.create_weights(layer, K, [N], K, N, torch.float16, weight_loader=None)
    return layer


def test_linear_method_converts_loaded_weights_to_the_kernel_layout(seed):
    config = awq_sm7x.AwqSm7xConfig.from_config(AWQ)
    method = awq_sm7x.AwqSm7xLinearMethod(config, "model.layers.0.mlp.down_proj")
    K, N = 384, 40
    layer = make_layer(method, K, N)
    assert layer.qweight.shape == (K, N // 8) and layer.scales.shape == (K // 128, N)
    qweight, qzeros, scales = quantize_awq(torch.randn(K, N, generator=torch.Generator().manual_seed(seed)), 128)
    layer.qweight.data.copy_(qweight), layer.qzeros.data.copy_(qzeros), layer.scales.data.copy_(scales)
    method.process_weights_after_loading(layer)
    assert not hasattr(layer, "qzeros") and not hasattr(layer, "scales")
    kernel = awq_sm7x.AwqKernelWeight(layer.qweight.data, layer.scale_zero.data, 128)
    expected = dequantize_awq(qweight, qzeros, scales, 128).t()
    assert ((dequantize_kernel_layout(kernel).double() - expected).norm() / expected.norm()) < 2e-3


def test_shards_that_split_a_group_name_the_layer_and_the_fix():
    method = awq_sm7x.AwqSm7xLinearMethod(awq_sm7x.AwqSm7xConfig(128), "model.layers.3.self_attn.o_proj")
    with pytest.raises(ValueError, match=r"o_proj: 320 input features per rank .* group size 128.*tensor-parallel"):
        make_layer(method, 320, 64)
    with pytest.raises(ValueError, match="12 output features per rank is not a multiple of 8"):
        make_layer(method, 256, 12)


def test_merged_parts_that_split_a_packed_column_name_the_layer_and_the_fix():
    method = awq_sm7x.AwqSm7xLinearMethod(awq_sm7x.AwqSm7xConfig(128), "model.layers.0.self_attn.qkv_proj")
    layer = torch.nn.Module()
    with pytest.raises(ValueError, match=r"qkv_proj: the merged parts' output features per rank \[36, 12, 16\] "
                                         r"include 36, not a multiple of 8"):
        method.create_weights(layer, 256, [36, 12, 16], 256, 64, torch.float16, weight_loader=None)


def test_moe_layers_get_the_grouped_expert_method():
    from vllm.model_executor.layers.fused_moe import RoutedExperts

    from vllm_sm7x.quantization.awq_moe import AwqSm7xMoEMethod

    moe = RoutedExperts.__new__(RoutedExperts)
    moe.__dict__["moe_config"] = None  # the config object is only stored by the method
    method = awq_sm7x.AwqSm7xConfig(128).get_quant_method(moe, "model.layers.0.mlp.experts")
    assert isinstance(method, AwqSm7xMoEMethod) and method.prefix == "model.layers.0.mlp.experts"


def test_unquantized_experts_are_refused_clearly():
    from vllm.model_executor.layers.fused_moe import RoutedExperts

    moe = RoutedExperts.__new__(RoutedExperts)
    moe.__dict__["moe_config"] = None
    config = awq_sm7x.AwqSm7xConfig(128, modules_to_not_convert=["mlp.experts"])
    with pytest.raises(NotImplementedError, match="layers.0.mlp.experts: this checkpoint leaves its experts "
                                                  "unquantized"):
        config.get_quant_method(moe, "model.layers.0.mlp.experts")


def test_an_mtp_head_with_unquantized_experts_says_to_serve_without_mtp():
    from vllm.model_executor.layers.fused_moe import RoutedExperts

    moe = RoutedExperts.__new__(RoutedExperts)
    moe.__dict__["moe_config"] = None
    config = awq_sm7x.AwqSm7xConfig(128, modules_to_not_convert=["mtp"])
    with pytest.raises(NotImplementedError, match="MTP head's experts unquantized.*without MTP"):
        config.get_quant_method(moe, "mtp.layers.0.mlp.experts")


def test_full_hugging_face_names_of_unquantized_layers_match_vllms_modules():
    """Qwen3.5 checkpoints may list full names (model.language_model.layers.0...); vLLM names the module
    language_model.model.layers.0..., and its loader hands the config the model's name mapper."""
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
    from vllm.model_executor.models.qwen3_5 import Qwen3_5ForConditionalGeneration

    config = awq_sm7x.AwqSm7xConfig(128, modules_to_not_convert=[
        "model.language_model.layers.0.linear_attn.in_proj_ba", "model.visual.blocks.0.attn.qkv"])
    config.packed_modules_mapping = Qwen3_5ForConditionalGeneration.packed_modules_mapping
    config.apply_vllm_mapper(Qwen3_5ForConditionalGeneration.hf_to_vllm_mapper.get_unstacked_mapper())
    layer = LinearBase.__new__(LinearBase)
    for prefix in ("language_model.model.layers.0.linear_attn.in_proj_ba", "visual.blocks.0.attn.qkv"):
        assert isinstance(config.get_quant_method(layer, prefix), UnquantizedLinearMethod), prefix
    assert isinstance(config.get_quant_method(layer, "language_model.model.layers.1.linear_attn.in_proj_ba"),
                      awq_sm7x.AwqSm7xLinearMethod)


def make_experts_layer(method, experts, hidden, inter):
    layer = torch.nn.Module()
    method.create_weights(layer, experts, hidden, inter, torch.float16, weight_loader=None)
    return layer


def test_moe_method_loads_awq_experts_and_stacks_them_in_the_kernel_layout(seed):
    from vllm_sm7x.quantization.awq_moe import AwqSm7xMoEMethod

    method = AwqSm7xMoEMethod(awq_sm7x.AwqSm7xConfig(128), None, "model.layers.0.mlp.experts")
    experts, hidden, inter = 3, 256, 128
    layer = make_experts_layer(method, experts, hidden, inter)
    assert layer.w13_qweight.shape == (experts, hidden, 2 * inter // 8)
    assert layer.w2_scales.shape == (experts, inter // 128, hidden)
    gen = torch.Generator().manual_seed(seed)
    expected = {}
    for name, (k, n) in {"w13": (hidden, 2 * inter), "w2": (inter, hidden)}.items():
        for e in range(experts):
            qweight, qzeros, scales = quantize_awq(torch.randn(k, n, generator=gen), 128)
            getattr(layer, f"{name}_qweight").data[e] = qweight
            getattr(layer, f"{name}_qzeros").data[e] = qzeros
            getattr(layer, f"{name}_scales").data[e] = scales
            expected[name, e] = dequantize_awq(qweight, qzeros, scales, 128).t()
    method.process_weights_after_loading(layer)
    assert not hasattr(layer, "w13_qzeros") and not hasattr(layer, "w2_scales")
    for (name, e), weight in expected.items():
        kernel = awq_sm7x.AwqKernelWeight(getattr(layer, f"{name}_qweight")[e], getattr(layer, f"{name}_scale_zero")[e],
                                          128)
        assert ((dequantize_kernel_layout(kernel).double() - weight).norm() / weight.norm()) < 2e-3


def test_moe_experts_that_split_a_group_name_the_layer_and_the_fix():
    from vllm_sm7x.quantization.awq_moe import AwqSm7xMoEMethod

    method = AwqSm7xMoEMethod(awq_sm7x.AwqSm7xConfig(128), None, "model.layers.5.mlp.experts")
    with pytest.raises(ValueError, match=r"experts: .*intermediate per rank 96 .* group size 128.*tensor-parallel"):
        make_experts_layer(method, 4, 256, 96)


def test_stock_awq_switch_leaves_awq_to_vllm_on_turing(activate, monkeypatch):
    activate("sm75", awq_sm7x)
    monkeypatch.setenv("VLLM_SM7X_STOCK_AWQ", "1")
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method(AWQ, None) is None


def test_stock_awq_switch_on_volta_is_refused_naming_the_switch(activate, monkeypatch):
    # vLLM's own AWQ kernels need SM75: its refusal ("minimum capability 75") would not say why it was asked.
    activate("sm70", awq_sm7x)
    monkeypatch.setenv("VLLM_SM7X_STOCK_AWQ", "1")
    with pytest.raises(ValueError, match="unset VLLM_SM7X_STOCK_AWQ"):
        awq_sm7x.AwqSm7xConfig.override_quantization_method(AWQ, None)
    assert awq_sm7x.AwqSm7xConfig.override_quantization_method({"quant_method": "gptq"}, None) is None


def test_moe_method_maps_expert_parallel_ids_and_refuses_what_it_cannot_run(monkeypatch):
    """Expert parallel: vLLM routes over all experts and hands each rank its expert_map (global ->
    local, -1 elsewhere); the method runs the layer on local ids, other ranks' rows dropped."""
    import types

    from vllm.model_executor.layers.fused_moe.activation import MoEActivation

    from vllm_sm7x.quantization import awq_moe

    calls = []
    monkeypatch.setattr(awq_moe, "awq_moe", lambda x, w13, w2, weights, ids, path: calls.append(ids) or x)
    method = awq_moe.AwqSm7xMoEMethod(awq_sm7x.AwqSm7xConfig(128), None, "model.layers.0.mlp.experts")
    layer = types.SimpleNamespace(activation=MoEActivation.SILU, apply_router_weight_on_input=False,
                                  expert_map=torch.tensor([-1, -1, 0, 1], dtype=torch.int32),
                                  w13_qweight=None, w13_scale_zero=None, w2_qweight=None, w2_scale_zero=None)
    x, weights = torch.zeros(2, 8, dtype=torch.float16), torch.full((2, 2), 0.5)
    method.apply(layer, x, weights, torch.tensor([[0, 2], [3, 1]], dtype=torch.int32))
    assert calls[0].tolist() == [[-1, 0], [1, -1]]
    layer.activation = MoEActivation.GELU
    with pytest.raises(NotImplementedError, match="only SiLU-gated experts"):
        method.apply(layer, x, weights, torch.zeros(2, 2, dtype=torch.int32))
    layer.activation, layer.apply_router_weight_on_input = MoEActivation.SILU, True
    with pytest.raises(NotImplementedError, match="router weights applied on the input"):
        method.apply(layer, x, weights, torch.zeros(2, 2, dtype=torch.int32))
    layer.apply_router_weight_on_input, layer.swiglu_limit = False, 7.0
    with pytest.raises(NotImplementedError, match=r"clamped SwiGLU \(swiglu_limit\)"):
        method.apply(layer, x, weights, torch.zeros(2, 2, dtype=torch.int32))
    with pytest.raises(NotImplementedError, match="use --all2all-backend allgather_reducescatter"):
        method.select_gemm_impl(None, layer)


def test_experts_with_bias_terms_are_refused_at_load():
    import types

    from vllm_sm7x.quantization import awq_moe

    method = awq_moe.AwqSm7xMoEMethod(awq_sm7x.AwqSm7xConfig(128), types.SimpleNamespace(has_bias=True),
                                      "model.layers.0.mlp.experts")
    with pytest.raises(NotImplementedError, match="experts with bias terms"):
        method.create_weights(torch.nn.Module(), 4, 256, 128, torch.float16, weight_loader=None)


@pytest.fixture
def serving_config(monkeypatch):
    """The engine's config as create_weights reads it while vLLM builds the model (set there, unset here)."""
    import types

    from vllm_sm7x.quantization import awq_moe

    config = types.SimpleNamespace(model_config=types.SimpleNamespace(enable_return_routed_experts=False))
    monkeypatch.setattr(awq_moe, "get_current_vllm_config", lambda: config)
    return config


def plain_router_layer(**changes):
    """What create_weights sees of a Qwen MoE layer (RoutedExperts) and its FusedMoEConfig: a softmax top-8
    router over 256 experts, renormalised, tensor parallel only."""
    import types

    from vllm.model_executor.layers.fused_moe.config import RoutingMethodType

    layer = types.SimpleNamespace(scoring_func="softmax", use_grouped_topk=False, custom_routing_function=None,
                                  e_score_correction_bias=None, top_k=8, renormalize=True)
    moe = types.SimpleNamespace(routing_method=RoutingMethodType.RenormalizeNaive, num_experts=256,
                                experts_per_token=8, has_bias=False, is_lora_enabled=False,
                                moe_parallel_config=types.SimpleNamespace(use_ep=False, dp_size=1))
    for name, value in changes.items():
        target = moe.moe_parallel_config if name in ("use_ep", "dp_size") else moe if hasattr(moe, name) else layer
        setattr(target, name, value)
    return layer, moe


def test_the_methods_routing_limits_are_the_kernels():
    """awq_moe.py refuses routers past the routing kernels' limits before the op would: its constants must be
    csrc/moe/moe_routing.h's, or a router the kernels take would be refused (or one they refuse let through)."""
    from vllm_sm7x.quantization import awq_moe

    header = (Path(__file__).resolve().parents[2] / "csrc" / "moe" / "moe_routing.h").read_text()
    limits = {name: int(value) for name, value in re.findall(r"constexpr int (kMax\w+) = (\d+);", header)}
    assert (awq_moe.MAX_KERNEL_ROUTED_EXPERTS, awq_moe.MAX_KERNEL_TOP_K) == (limits["kMaxRoutedExperts"],
                                                                           limits["kMaxTopK"])


def test_a_plain_softmax_router_is_left_to_the_expert_kernels(serving_config):
    from vllm_sm7x.quantization.awq_moe import why_vllm_routes

    assert why_vllm_routes(*plain_router_layer()) is None
    assert why_vllm_routes(*plain_router_layer(renormalize=False)) is None


@pytest.mark.parametrize("changes, reason", [
    ({"use_grouped_topk": True}, "not a plain softmax top-k"),
    ({"scoring_func": "sigmoid"}, "not a plain softmax top-k"),
    ({"e_score_correction_bias": torch.zeros(256)}, "not a plain softmax top-k"),
    ({"custom_routing_function": print}, "not a plain softmax top-k"),
    ({"routing_method": "DeepSeekV3"}, r"not a plain softmax top-k \(DeepSeekV3\)"),
    ({"dp_size": 2}, "expert or data parallel"),
    ({"routing_method": "Simulated"}, r"not a plain softmax top-k \(Simulated\)"),
    ({"use_ep": True}, "expert or data parallel"),
    ({"num_experts": 2048}, "2048 experts top-8 is past the kernels' routing"),
    ({"experts_per_token": 33}, "256 experts top-33 is past the kernels' routing"),
    ({"is_lora_enabled": True}, "LoRA"),
])
def test_other_routers_stay_with_vllm_and_say_why(changes, reason, serving_config):
    from vllm.model_executor.layers.fused_moe.config import RoutingMethodType

    from vllm_sm7x.quantization.awq_moe import why_vllm_routes

    if "routing_method" in changes:
        changes["routing_method"] = RoutingMethodType[changes["routing_method"]]
    assert re.search(reason, why_vllm_routes(*plain_router_layer(**changes)))


def test_routing_in_the_kernels_can_be_switched_off_and_yields_to_returned_routed_experts(monkeypatch,
                                                                                          serving_config):
    from vllm_sm7x.quantization import awq_moe

    monkeypatch.setenv("VLLM_SM7X_MOE_ROUTER_IN_KERNEL", "0")
    assert awq_moe.why_vllm_routes(*plain_router_layer()) == "VLLM_SM7X_MOE_ROUTER_IN_KERNEL=0"
    monkeypatch.delenv("VLLM_SM7X_MOE_ROUTER_IN_KERNEL")
    serving_config.model_config.enable_return_routed_experts = True
    assert "--enable-return-routed-experts" in awq_moe.why_vllm_routes(*plain_router_layer())
    serving_config.model_config = None  # a config without a model (vLLM's own tests build such)
    assert awq_moe.why_vllm_routes(*plain_router_layer()) is None


def test_monolithic_method_hands_the_router_logits_to_the_kernels(monkeypatch, serving_config):
    """With a plain router the method is monolithic (vLLM skips its router and passes the logits), and
    apply_monolithic runs the layer from them with the layer's top-k and renormalisation."""
    from vllm.model_executor.layers.fused_moe.activation import MoEActivation

    from vllm_sm7x.quantization import awq_moe

    router_layer, moe = plain_router_layer()
    method = awq_moe.AwqSm7xMoEMethod(awq_sm7x.AwqSm7xConfig(128), moe, "model.layers.0.mlp.experts")
    assert not method.is_monolithic  # undecided before the layer is seen

    def create_layer():
        layer = torch.nn.Module()
        layer.__dict__.update(vars(router_layer), activation=MoEActivation.SILU, apply_router_weight_on_input=False)
        method.create_weights(layer, 4, 256, 128, torch.float16, weight_loader=None)
        return layer

    layer = create_layer()
    assert method.is_monolithic
    method.process_weights_after_loading(layer)
    calls = []
    monkeypatch.setattr(awq_moe, "awq_moe_routed",
                        lambda x, w13, w2, logits, top_k, renormalize, path: calls.append((top_k, renormalize)) or x)
    x = torch.zeros(2, 256, dtype=torch.float16)
    assert method.apply_monolithic(layer, x, torch.zeros(2, 4)) is x and calls == [(8, True)]
    layer.activation = MoEActivation.GELU
    with pytest.raises(NotImplementedError, match="only SiLU-gated experts"):
        method.apply_monolithic(layer, x, torch.zeros(2, 4))
    monkeypatch.setenv("VLLM_SM7X_MOE_ROUTER_IN_KERNEL", "0")
    create_layer()
    assert not method.is_monolithic
