"""On the sm70 path vLLM's layer ops take their PyTorch implementations (no vllm._C kernel exists
for Volta); on sm75 and elsewhere vLLM's choice stands; a user's explicit choice is kept."""
import logging

from vllm_sm7x.op_policy import custom_ops_for, ir_priority_for, moe_refusal


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
    refusal = moe_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, "gptq_marlin")
    assert refusal and "only from AWQ checkpoints" in refusal and "gptq_marlin" in refusal
    assert "quantization none" in moe_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, None)
    assert moe_refusal("sm70", "Qwen3_5MoeForConditionalGeneration", True, "awq_sm7x") is None
    assert moe_refusal("sm70", "Qwen3_5ForConditionalGeneration", False, None) is None
    assert moe_refusal("sm75", "Qwen3_5MoeForConditionalGeneration", True, "gptq_marlin") is None
