"""4-bit GPTQ on the AWQ kernels (sm70 path): the format conversion against a float64 reference, when
the gptq_sm7x config claims a checkpoint, what it refuses, and the linear method's loading (CPU)."""
import pytest
import torch

from vllm_sm7x.quantization.awq_format import AwqKernelWeight, dequantize_kernel_layout
from vllm_sm7x.quantization.gptq_format import (dequantize_gptq, gptq_to_kernel_layout, pack_gptq, quantize_gptq,
                                                unpack_gptq)

gptq_sm7x = pytest.importorskip("vllm_sm7x.quantization.gptq_sm7x")
pytestmark = pytest.mark.usefixtures("one_tensor_parallel_rank")

GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
        "checkpoint_format": "gptq"}
# vLLM fills this from the checkpoint's quantized tensors at load (maybe_update_config); given here.
QUANTIZED = {"modules_in_block_to_quantize": ["self_attn.o_proj", "mlp.down_proj"]}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_packing_along_k_round_trips(seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 16, (72, 40), generator=gen, dtype=torch.int32)
    packed = pack_gptq(values)
    assert packed.shape == (9, 40) and packed.dtype == torch.int32
    assert torch.equal(unpack_gptq(packed), values)
    # k = 8i + j sits in nibble j of word i (GPTQ's order, along K)
    assert int(packed[0, 0]) & 0xF == int(values[0, 0]) and (int(packed[0, 0]) >> 28) & 0xF == int(values[7, 0])


@pytest.mark.parametrize("K, N, group_size", [(128, 24, 128), (384, 1040, 64), (96, 8, 32)])
def test_kernel_layout_holds_the_gptq_weight(K, N, group_size, seed):
    """The converted weight, as the kernels dequantise it (q * scale - 8 * scale, fp16), against the
    float64 GPTQ weight; odd N and more columns than one conversion chunk."""
    weight = torch.randn(K, N, generator=torch.Generator().manual_seed(seed))
    qweight, scales = quantize_gptq(weight, group_size)
    kernel = gptq_to_kernel_layout(qweight, scales, group_size)
    reference = dequantize_gptq(qweight, scales, group_size)
    assert relative_error(dequantize_kernel_layout(kernel).t(), reference) < 1e-3
    assert relative_error(reference, weight) < 0.15  # the quantiser itself: 4-bit rounding of a Gaussian


@pytest.mark.parametrize("K, N, group_size", [(256, 64, 128), (512, 1040, 64), (96, 24, 32)])
def test_format_is_vllms_gptq(K, N, group_size, seed):
    """vLLM's own GPTQ packing and uint4b8 quantiser (what its GPTQ kernels read) as the outside anchor:
    the same words, and the converted weight is vLLM's dequantised one to fp16 rounding."""
    from vllm.model_executor.layers.quantization.utils.quant_utils import gptq_pack, gptq_quantize_weights
    from vllm.scalar_type import scalar_types

    torch.manual_seed(seed)
    weight = torch.randn(K, N, dtype=torch.float16)
    w_ref, w_q, w_s, _, _ = gptq_quantize_weights(weight, scalar_types.uint4b8, group_size, False)
    qweight = gptq_pack(w_q, 4, K, N)
    assert torch.equal(qweight, pack_gptq(w_q)) and torch.equal(unpack_gptq(qweight), w_q.int())
    kernel = gptq_to_kernel_layout(qweight, w_s.half(), group_size)
    assert relative_error(dequantize_kernel_layout(kernel).t(), w_ref) < 1e-3


def test_conversion_refuses_what_does_not_fit():
    qweight, scales = quantize_gptq(torch.randn(256, 16), 128)
    with pytest.raises(ValueError, match="group size 256 is not supported"):
        gptq_to_kernel_layout(qweight, scales, 256)
    with pytest.raises(ValueError, match=r"scales \(2, 8\) do not match qweight \(32, 16\)"):
        gptq_to_kernel_layout(qweight, scales[:, :8], 128)


def test_registered_with_vllm_as_a_gptq_config():
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config
    from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig

    assert "gptq_sm7x" in QUANTIZATION_METHODS
    assert get_quantization_config("gptq_sm7x") is gptq_sm7x.GptqSm7xConfig
    # vLLM's model code recognises GPTQ by class (e.g. which GDN projections to keep whole)
    assert issubclass(gptq_sm7x.GptqSm7xConfig, AutoGPTQConfig)
    assert gptq_sm7x.GptqSm7xConfig.get_min_capability() == 70
    assert gptq_sm7x.GptqSm7xConfig.get_supported_act_dtypes() == [torch.float16]


@pytest.mark.parametrize("user_quant", [None, "gptq", "gptq_marlin", "auto_gptq", "marlin", "gptq_sm7x"])
def test_claims_gptq_checkpoints_on_the_sm70_path(activate, user_quant):
    activate("sm70")
    assert gptq_sm7x.GptqSm7xConfig.override_quantization_method(GPTQ, user_quant) == "gptq_sm7x"


def test_turing_and_other_gpus_keep_stock_gptq(activate):
    activate("sm75")  # vLLM's GPTQ Marlin kernel has sm_75 code
    assert gptq_sm7x.GptqSm7xConfig.override_quantization_method(GPTQ, None) is None
    activate(None)
    assert gptq_sm7x.GptqSm7xConfig.override_quantization_method(GPTQ, None) is None
    activate("sm70")
    assert gptq_sm7x.GptqSm7xConfig.override_quantization_method({"quant_method": "awq"}, None) is None
    assert gptq_sm7x.GptqSm7xConfig.override_quantization_method(GPTQ, "fp8") is None


@pytest.mark.parametrize("change, message", [
    ({"bits": 8}, "GPTQ with 8-bit weights is not supported on SM70: only 4-bit"),
    ({"sym": False}, r"sym: false\) is not supported: use a sym: true export"),
    ({"group_size": 256}, "group size 256 is not supported on SM70"),
    ({"group_size": -1}, "group size -1 is not supported on SM70"),
    ({"desc_act": True}, r"act-order \(desc_act: true.*desc_act: false"),
    ({"lm_head": True}, "quantized lm_head"),
])
def test_unsupported_checkpoints_are_refused_with_the_rule(change, message):
    with pytest.raises(ValueError, match=message):
        gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, **change})


def linear_layer():
    from vllm.model_executor.layers.linear import LinearBase

    return LinearBase.__new__(LinearBase)


def test_linear_method_loads_gptq_tensors_and_converts_them(seed):
    config = gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, **QUANTIZED})
    method = config.get_quant_method(linear_layer(), "model.layers.0.mlp.down_proj")
    assert isinstance(method, gptq_sm7x.GptqSm7xLinearMethod) and method.prefix == "model.layers.0.mlp.down_proj"
    K, N = 384, 40
    layer = torch.nn.Module()
    method.create_weights(layer, K, [N], K, N, torch.float16, weight_loader=None)
    assert layer.qweight.shape == (K // 8, N) and layer.scales.shape == (K // 128, N)
    assert layer.qzeros.shape == (K // 128, N // 8) and layer.g_idx.shape == (K,)
    qweight, scales = quantize_gptq(torch.randn(K, N, generator=torch.Generator().manual_seed(seed)), 128)
    layer.qweight.data.copy_(qweight), layer.scales.data.copy_(scales)
    layer.qzeros.data.fill_(0x77777777)  # GPTQ v1 stores zero - 1 = 7 in every nibble
    layer.g_idx.data.copy_(torch.arange(K) // 128)
    method.process_weights_after_loading(layer)
    assert {name for name, _ in layer.named_parameters()} == {"qweight", "scale_zero"}
    kernel = AwqKernelWeight(layer.qweight.data, layer.scale_zero.data, 128)
    assert relative_error(dequantize_kernel_layout(kernel).t(), dequantize_gptq(qweight, scales, 128)) < 1e-3


def test_shards_that_split_a_group_name_the_layer_and_the_fix():
    method = gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, **QUANTIZED}).get_quant_method(
        linear_layer(), "model.layers.3.self_attn.o_proj")
    with pytest.raises(ValueError, match=r"o_proj: 320 input features per rank .* GPTQ group size 128"):
        method.create_weights(torch.nn.Module(), 320, [64], 320, 64, torch.float16, weight_loader=None)


def test_dynamic_rules_apply_per_module():
    """GPTQModel's `dynamic`: a module the rules skip stays fp16, one they give 8 bits is refused by name."""
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod

    config = gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, **QUANTIZED, "dynamic": {
        r"-:.*\.layers\.0\.mlp\..*": {}, r"+:.*\.layers\.1\.mlp\..*": {"bits": 8}}})
    assert isinstance(config.get_quant_method(linear_layer(), "model.layers.0.mlp.down_proj"),
                      UnquantizedLinearMethod)
    with pytest.raises(ValueError, match=r"layers\.1\.mlp\.down_proj: GPTQ with 8-bit weights is not supported"):
        config.get_quant_method(linear_layer(), "model.layers.1.mlp.down_proj")


@pytest.mark.parametrize("rule, refusal", [({"sym": False}, r"sym: false\) is not supported: use a sym: true export"),
                                           ({"bits": 3}, "GPTQ with 3-bit weights is not supported")])
def test_a_dynamic_rule_vllm_rejects_is_refused_with_the_module_and_the_fix(rule, refusal):
    config = gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, **QUANTIZED, "dynamic": {r"+:.*\.layers\.2\..*": rule}})
    with pytest.raises(ValueError, match=r"model\.layers\.2\.self_attn\.o_proj \(by the checkpoint's `dynamic` "
                                         r"rules\): .*" + refusal):
        config.get_quant_method(linear_layer(), "model.layers.2.self_attn.o_proj")


def test_gptq_experts_are_refused_with_the_awq_alternative():
    from vllm.model_executor.layers.fused_moe import RoutedExperts

    moe = RoutedExperts.__new__(RoutedExperts)
    with pytest.raises(NotImplementedError, match="layers.0.mlp.experts: GPTQ mixture-of-experts .* AWQ export"):
        gptq_sm7x.GptqSm7xConfig.from_config(GPTQ).get_quant_method(moe, "model.layers.0.mlp.experts")


@pytest.mark.parametrize("size", [1, 2])
def test_tensor_parallel_shards_load_as_vllms_layers_split_them(monkeypatch, size):
    """Through vLLM's own linear layers (row, column, merged gate/up, QKV with GQA): each rank's converted
    weight is its slice of the checkpoint's, and loading logs no warning."""
    import logging

    import vllm.model_executor.layers.linear as linear
    import vllm.model_executor.parameter as parameter

    from vllm_sm7x.checkpoints import gptq_tensors

    group, hidden, inter, head_dim, heads, kv_heads = 64, 256, 384, 32, 8, 2
    config = gptq_sm7x.GptqSm7xConfig.from_config({**GPTQ, "group_size": group, "modules_in_block_to_quantize": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]})
    config.packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage()) if record.levelno >= logging.WARNING else None
    logging.getLogger(linear.__name__).addHandler(handler)

    def checkpoint(K, N, seed):
        tensors = gptq_tensors(torch.randn(K, N, generator=torch.Generator().manual_seed(seed)), group)
        return dict(zip(("qweight", "scales", "qzeros", "g_idx"), tensors)), dequantize_gptq(tensors[0], tensors[1],
                                                                                             group)

    def load(layer, parts):
        for shard, (tensors, _) in parts:
            for name, tensor in tensors.items():
                param = getattr(layer, name)
                param.weight_loader(param, tensor, *([] if shard is None else [shard]))
        layer.quant_method.process_weights_after_loading(layer)
        return dequantize_kernel_layout(AwqKernelWeight(layer.qweight.data, layer.scale_zero.data, group)).t()

    try:
        for rank in range(size):
            for module in (parameter, linear):
                monkeypatch.setattr(module, "get_tensor_model_parallel_rank", lambda: rank)
                monkeypatch.setattr(module, "get_tensor_model_parallel_world_size", lambda: size)
            cols = lambda w, n: w[:, rank * n // size:(rank + 1) * n // size]  # noqa: E731
            down = checkpoint(inter, hidden, 1)
            layer = linear.RowParallelLinear(inter, hidden, bias=False, params_dtype=torch.float16, quant_config=config,
                                             prefix="model.layers.0.mlp.down_proj")
            rows = slice(rank * inter // size, (rank + 1) * inter // size)
            assert relative_error(load(layer, [(None, down)]), down[1][rows]) < 1e-3
            gate, up = checkpoint(hidden, inter, 2), checkpoint(hidden, inter, 3)
            layer = linear.MergedColumnParallelLinear(hidden, [inter, inter], bias=False, params_dtype=torch.float16,
                                                      quant_config=config, prefix="model.layers.0.mlp.gate_up_proj")
            want = torch.cat([cols(gate[1], inter), cols(up[1], inter)], 1)
            assert relative_error(load(layer, [(0, gate), (1, up)]), want) < 1e-3
            q, k, v = (checkpoint(hidden, n * head_dim, seed) for seed, n in ((4, heads), (5, kv_heads), (6, kv_heads)))
            layer = linear.QKVParallelLinear(hidden, head_dim, heads, kv_heads, bias=False, params_dtype=torch.float16,
                                             quant_config=config, prefix="model.layers.0.self_attn.qkv_proj")
            want = torch.cat([cols(q[1], heads * head_dim), cols(k[1], kv_heads * head_dim),
                              cols(v[1], kv_heads * head_dim)], 1)
            assert relative_error(load(layer, [("q", q), ("k", k), ("v", v)]), want) < 1e-3
    finally:
        logging.getLogger(linear.__name__).removeHandler(handler)
    assert not warnings, warnings[:3]


def test_a_written_checkpoint_names_its_quantized_modules_as_vllm_finds_them(tmp_path):
    """vLLM fills the quantized-module list from the checkpoint's files (maybe_update_config); the merged
    layers vLLM builds (qkv_proj, gate_up_proj) then get our method, an unquantized one does not."""
    import json

    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM

    from vllm_sm7x.checkpoints import make_checkpoint

    out = make_checkpoint("qwen3-tiny", tmp_path, seed=0, device="cpu", quantization="gptq")
    config = gptq_sm7x.GptqSm7xConfig.from_config(json.loads((out / "config.json").read_text())["quantization_config"])
    config.maybe_update_config(str(out))
    config.packed_modules_mapping = Qwen3ForCausalLM.packed_modules_mapping
    for name in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"):
        assert isinstance(config.get_quant_method(linear_layer(), f"model.layers.1.{name}"),
                          gptq_sm7x.GptqSm7xLinearMethod), name
    config.modules_in_block_to_quantize.remove("model.layers.1.mlp.down_proj")
    assert isinstance(config.get_quant_method(linear_layer(), "model.layers.1.mlp.down_proj"), UnquantizedLinearMethod)
