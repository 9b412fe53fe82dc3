"""On the sm70 path vLLM's layer ops take their PyTorch implementations (no vllm._C kernel exists
for Volta); on sm75 and elsewhere vLLM's choice stands; a user's explicit choice is kept."""
import logging

import pytest

from vllm_sm7x.op_policy import custom_ops_for, ir_priority_for, serving_refusal


def test_sm70_turns_cuda_kernel_ops_off_unless_the_user_chose():
    assert custom_ops_for("sm70", []) == ["none"]
    assert custom_ops_for("sm70", ["+quant_fp8"]) == ["+quant_fp8", "none"]
    assert custom_ops_for("sm70", ["none", "+rms_norm"]) == ["none", "+rms_norm"]


def test_sm70_warns_when_the_user_asks_for_all_kernels(caplog):
    with caplog.at_level(logging.WARNING):
        assert custom_ops_for("sm70", ["all"]) == ["all"]
    assert "no sm_70 code" in caplog.text


def test_other_paths_keep_vllms_choice():
    assert custom_ops_for("sm75", []) == []
    assert custom_ops_for(None, ["all"]) == ["all"]
    assert ir_priority_for("sm75") is None and ir_priority_for(None) is None
    assert ir_priority_for("sm70") == ["native"]


def test_moe_models_on_sm70_must_be_awq():
    refusal = serving_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, "gptq_marlin")
    assert refusal and "only from AWQ checkpoints" in refusal and "gptq_marlin" in refusal
    assert "quantization none" in serving_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, None)
    assert serving_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, "awq_sm7x") is None
    assert serving_refusal("sm70", "Qwen3_5ForConditionalGeneration", False, None) is None
    assert serving_refusal("sm75", "Qwen3_5MoeForConditionalGeneration", True, "gptq_marlin") is None


@pytest.mark.parametrize("quantization", ["gptq", "auto_gptq", "gptq_marlin"])
def test_dense_gptq_on_sm70_is_refused_with_the_alternative(quantization):
    refusal = serving_refusal("sm70", "Qwen3ForCausalLM", False, quantization)
    assert refusal and f"{quantization} checkpoints run on vLLM's GPTQ kernels, which have no sm_70 code" in refusal
    assert "gptq_sm7x" in refusal and "an AWQ export of this model" in refusal
    assert serving_refusal("sm75", "Qwen3ForCausalLM", False, quantization) is None  # Marlin's sm_75 code runs


def test_gptq_on_our_kernels_is_served_on_sm70_dense_only():
    assert serving_refusal("sm70", "Qwen3ForCausalLM", False, "gptq_sm7x") is None
    assert "mixture-of-experts" in serving_refusal("sm70", "Qwen3MoeForCausalLM", True, "gptq_sm7x")


def test_other_dense_checkpoints_on_sm70_are_left_to_vllm():
    for quantization in (None, "awq_sm7x", "bitsandbytes"):
        assert serving_refusal("sm70", "Qwen3ForCausalLM", False, quantization) is None
