"""vllm_sm7x.checkpoints.reference loads a generated checkpoint back into its transformers model in
float32 (the third opinion the GPU end-to-end tests ask when our engine and stock vLLM disagree)."""
import json

import pytest
import torch

from vllm_sm7x.checkpoints import GAP_PROMPTS, make_checkpoint, median_top2_gap
from vllm_sm7x.checkpoints.reference import chosen_logprobs, float_reference_model, sure_disagreements
from vllm_sm7x.quantization.awq_format import dequantize_awq


@pytest.mark.parametrize("preset", ["qwen3-tiny", "qwen35-tiny", "qwen36-35b-a3b-tiny"])
def test_fp16_checkpoint_loads_back_as_the_model_it_was_written_from(tmp_path, preset):
    # checkpoint_info.json holds the float32 original's median top-2 gap; the reloaded model differs
    # from it by fp16 weight rounding only. A misplaced tensor (gate/up swapped, wrong expert) gives a
    # different random model, whose gap is off by tenths.
    out = make_checkpoint(preset, tmp_path, seed=0, device="cpu", quantization=None)
    model = float_reference_model(out)
    recorded = json.loads((out / "checkpoint_info.json").read_text())["median_top1_top2_logprob_gap"]
    assert median_top2_gap(model, GAP_PROMPTS, model.config.vocab_size) == pytest.approx(recorded, abs=0.03)


def test_awq_experts_are_dequantized_into_the_fused_expert_tensors(tmp_path):
    from safetensors.torch import load_file

    out = make_checkpoint("qwen36-35b-a3b-tiny", tmp_path, group_size=128, seed=0, device="cpu")
    model = float_reference_model(out)
    tensors = load_file(str(out / "model.safetensors"))
    experts = model.model.layers[2].mlp.experts
    inter = experts.intermediate_dim

    def dequantized(name):
        prefix = f"model.language_model.layers.2.mlp.experts.5.{name}"
        return dequantize_awq(*(tensors[f"{prefix}.{part}"] for part in ("qweight", "qzeros", "scales")), 128).t()

    assert torch.equal(experts.gate_up_proj[5][:inter].double(), dequantized("gate_proj"))
    assert torch.equal(experts.gate_up_proj[5][inter:].double(), dequantized("up_proj"))
    assert torch.equal(experts.down_proj[5].double(), dequantized("down_proj"))


def test_teacher_forced_check_flags_only_the_tokens_the_reference_would_not_pick(tmp_path):
    model = float_reference_model(make_checkpoint("qwen35-tiny", tmp_path, seed=0, device="cpu"))
    prompt, tokens = GAP_PROMPTS[0], []
    for _ in range(12):  # the reference's own greedy continuation
        tokens.append(int(model(torch.tensor([prompt + tokens])).logits[0, -1].argmax()))
    assert sure_disagreements(model, prompt, tokens, margin=0.1) == []
    logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1:-1]
    unlikely = int(logits[7].argmin())
    flagged = sure_disagreements(model, prompt, tokens[:7] + [unlikely] + tokens[8:], margin=0.1)
    assert [position for position, _ in flagged][:1] == [7] and flagged[0][1] > 1
    # The arbiter of two engines' log-probabilities: the same numbers a full forward pass gives.
    exact = logits.double().log_softmax(-1)
    assert chosen_logprobs(model, prompt, tokens) == pytest.approx(
        [float(exact[i, t]) for i, t in enumerate(tokens)], abs=1e-5)


def test_a_checkpoint_that_does_not_fit_its_config_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    out = make_checkpoint("qwen3-tiny", tmp_path, seed=0, device="cpu", quantization=None)
    tensors = load_file(str(out / "model.safetensors"))
    del tensors["model.norm.weight"]
    save_file(tensors, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="does not match the checkpoint.*model.norm.weight"):
        float_reference_model(out)
