"""vllm_sm7x.checkpoints (tools/make_checkpoint.py) writes a loadable AWQ checkpoint with a working tokenizer and a
Qwen3.5/3.6-style chat template (tools, tool calls, tool results, thinking on and off)."""
import json
import pytest
import torch

from vllm_sm7x.checkpoints import make_checkpoint

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint("qwen3-tiny", tmp_path_factory.mktemp("qwen3-tiny"), group_size=64, seed=3)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(checkpoint))


def test_config_declares_awq_and_the_weights_match_it(checkpoint):
    from safetensors.torch import load_file

    config = json.loads((checkpoint / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "awq", "bits": 4, "group_size": 64,
                                             "zero_point": True, "version": "gemm"}
    tensors = load_file(str(checkpoint / "model.safetensors"))
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    assert tensors["model.layers.0.mlp.down_proj.qweight"].shape == (inter, hidden // 8)
    assert tensors["model.layers.0.mlp.down_proj.scales"].shape == (inter // 64, hidden)
    assert tensors["model.layers.1.self_attn.q_proj.qzeros"].dtype == torch.int32
    assert "model.layers.0.self_attn.q_proj.weight" not in tensors
    assert tensors["lm_head.weight"].shape == (config["vocab_size"], hidden)


def test_tokenizer_fits_the_model_and_keeps_markers_whole(checkpoint, tokenizer):
    config = json.loads((checkpoint / "config.json").read_text())
    assert len(tokenizer) <= config["vocab_size"]
    for marker in ("<tool_call>", "</tool_call>", "<think>", "</think>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer.encode(marker)) == 1, marker
    assert config["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    text = 'call get_weather with {"city": "Paris"} please'
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_chat_template_renders_tools_calls_results_and_thinking(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
                {"role": "tool", "content": "sunny"}]
    prompt = tokenizer.apply_chat_template(messages, tools=[WEATHER], add_generation_prompt=True,
                                           enable_thinking=False, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert json.dumps(WEATHER) in prompt
    assert ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n"
            "</parameter>\n</function>\n</tool_call><|im_end|>") in prompt
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    thinking = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                             tokenize=False)
    assert thinking == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"


def test_next_token_distributions_are_peaked(checkpoint):
    # Greedy comparisons between two correct fp16 implementations flip only where top-1 and top-2
    # are within rounding; the checkpoint records how far apart they are.
    info = json.loads((checkpoint / "checkpoint_info.json").read_text())
    assert info["preset"] == "qwen3-tiny" and info["lm_head_scale"] > 1
    assert info["median_top1_top2_logprob_gap"] > 0.5


def test_unknown_presets_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'qwen9'.*qwen3-27b-width"):
        make_checkpoint("qwen9", tmp_path)


def test_fp16_variant_is_the_same_model_unquantized(tmp_path):
    from safetensors.torch import load_file

    out = make_checkpoint("qwen3-tiny", tmp_path / "fp16", seed=3, quantization=None)
    config = json.loads((out / "config.json").read_text())
    tensors = load_file(str(out / "model.safetensors"))
    assert "quantization_config" not in config
    assert tensors["model.layers.0.mlp.down_proj.weight"].dtype == torch.float16
    assert not any(name.endswith("qweight") for name in tensors)


def test_hybrid_preset_is_a_text_only_qwen35_checkpoint(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoConfig

    out = make_checkpoint("qwen35-tiny", tmp_path, group_size=128, seed=1, device="cpu")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    assert AutoConfig.from_pretrained(str(out)).text_config.layer_types.count("linear_attention") == 3
    assert config["quantization_config"]["modules_to_not_convert"] == ["in_proj_a", "in_proj_b", "visual"]
    tensors = load_file(str(out / "model.safetensors"))
    gdn = "model.language_model.layers.0.linear_attn."
    assert tensors[gdn + "in_proj_qkv.qweight"].shape == (256, (2 * 2 * 64 + 4 * 64) // 8)
    assert tensors[gdn + "in_proj_b.weight"].shape == (4, 256) and tensors[gdn + "A_log"].shape == (4,)
    assert tensors["model.language_model.layers.3.self_attn.q_proj.qweight"].shape == (256, 2 * 4 * 64 // 8)
    assert not any(name.startswith(("model.visual", "mtp.", "model.layers")) for name in tensors)
    assert json.loads((out / "checkpoint_info.json").read_text())["median_top1_top2_logprob_gap"] > 0.5


def test_hybrid_width_preset_has_qwen36_27b_layer_shapes():
    from transformers import AutoConfig

    from vllm_sm7x.checkpoints import PRESETS

    preset = PRESETS["qwen36-27b-width"]
    text = AutoConfig.for_model(**{k: v for k, v in preset.items() if k != "architectures"}).text_config
    assert (text.hidden_size, text.intermediate_size, text.vocab_size) == (5120, 17408, 248320)
    assert text.layer_types == ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3 + [
        "full_attention"]
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (24, 4, 256)
    assert (text.linear_num_key_heads, text.linear_num_value_heads, text.linear_key_head_dim) == (16, 48, 128)


def test_moe_preset_writes_each_expert_in_awq_format(tmp_path):
    """vLLM's loader and the published Qwen3.6-35B-A3B AWQ uploads name experts one by one."""
    from safetensors.torch import load_file

    from vllm_sm7x.quantization.awq_format import dequantize_awq

    out = make_checkpoint("qwen36-35b-a3b-tiny", tmp_path, group_size=64, seed=2, device="cpu")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5MoeForConditionalGeneration"]
    tensors = load_file(str(out / "model.safetensors"))
    mlp = "model.language_model.layers.1.mlp."
    for e in range(8):
        assert tensors[f"{mlp}experts.{e}.gate_proj.qweight"].shape == (256, 128 // 8)
        assert tensors[f"{mlp}experts.{e}.up_proj.scales"].shape == (256 // 64, 128)
        assert tensors[f"{mlp}experts.{e}.down_proj.qweight"].shape == (128, 256 // 8)
    assert tensors[f"{mlp}shared_expert.gate_proj.qweight"].shape == (256, 128 // 8)
    assert tensors[f"{mlp}gate.weight"].shape == (8, 256) and tensors[f"{mlp}shared_expert_gate.weight"].shape == (1, 256)
    assert not any("gate_up_proj" in name for name in tensors)
    gate, up = (dequantize_awq(*(tensors[f"{mlp}experts.3.{p}.{part}"] for part in ("qweight", "qzeros", "scales")), 64)
                for p in ("gate_proj", "up_proj"))
    assert not torch.allclose(gate, up)  # two different halves of the fused tensor, not one twice
    info = json.loads((out / "checkpoint_info.json").read_text())
    assert info["median_top1_top2_logprob_gap"] > 0.5
    # A peaked router, as trained ones are: an expert swap at the k-th place (rounding at a near-tie)
    # moves little, while the k-th expert still counts in the output.
    assert 0.02 < info["median_kth_expert_weight"] < 0.3


def test_moe_experts_keep_gate_up_and_down_of_the_model(tmp_path):
    """Split back from the fused tensors in the right order: gate is the first half of gate_up."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from vllm_sm7x.checkpoints import PRESETS

    out = make_checkpoint("qwen36-35b-a3b-tiny", tmp_path, seed=4, device="cpu", quantization=None)
    tensors = load_file(str(out / "model.safetensors"))
    preset = PRESETS["qwen36-35b-a3b-tiny"]
    torch.manual_seed(4)  # the same draw as make_checkpoint's
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**{k: v for k, v in preset.items() if k != "architectures"}).text_config,
        dtype=torch.float32)
    experts = model.model.layers[2].mlp.experts
    mlp = "model.language_model.layers.2.mlp.experts.5."
    assert torch.equal(tensors[mlp + "gate_proj.weight"], experts.gate_up_proj[5, :128].half())
    assert torch.equal(tensors[mlp + "up_proj.weight"], experts.gate_up_proj[5, 128:].half())
    assert torch.equal(tensors[mlp + "down_proj.weight"], experts.down_proj[5].half())


def test_mtp_preset_has_an_fp16_head_whose_drafts_are_often_accepted(tmp_path):
    """The head is built, not trained: fc keeps the embedding half, its layer adds nothing, so it
    guesses the next token from the token alone; the model is scaled so that guess is often right."""
    from safetensors.torch import load_file

    out = make_checkpoint("qwen35-tiny-mtp", tmp_path, group_size=128, seed=0, device="cpu")
    config = json.loads((out / "config.json").read_text())
    assert "mtp" in config["quantization_config"]["modules_to_not_convert"]
    assert config["text_config"]["mtp_num_hidden_layers"] == 1
    tensors = load_file(str(out / "model.safetensors"))
    fc = tensors["mtp.fc.weight"]
    assert fc.shape == (256, 512) and torch.equal(fc[:, :256], torch.eye(256).half()) and not fc[:, 256:].any()
    assert not tensors["mtp.layers.0.self_attn.o_proj.weight"].any() and not tensors["mtp.layers.0.mlp.down_proj.weight"].any()
    assert tensors["mtp.layers.0.self_attn.q_proj.weight"].shape == (2 * 4 * 64, 256)  # gated attention
    assert not any(name.startswith("mtp.") and name.endswith("qweight") for name in tensors)
    assert "model.language_model.layers.3.self_attn.o_proj.qweight" in tensors  # the model itself is AWQ
    from vllm_sm7x.profiles.model_facts import read_model_facts

    assert read_model_facts(out).has_mtp_weights  # so the serving profile turns MTP on for it
    # vLLM's drafting replayed on the served weights (AWQ dequantized): 0.26 on the CPU (seed 0). The
    # end-to-end MTP test prints it beside the rates of ours and stock vLLM.
    expected = json.loads((out / "checkpoint_info.json").read_text())["mtp_expected_acceptance"]
    assert 0.2 < expected < 0.9  # drafts get accepted, and the layers still decide many tokens


def test_mtp_replay_of_a_model_that_is_its_own_head_accepts_nearly_every_draft_in_vocabulary_slices():
    """mtp_expected_acceptance against a model whose next token is exactly the head's guess (logits of the
    last token's embedding): every chained draft is accepted but where the 64 tokens run out. The head's
    guesses are taken in slices of the vocabulary: at 27B widths the whole table's logits would be
    248,320^2 floats (230 GB; the H200 ran out of memory on 2026-12-01)."""
    import types

    from vllm_sm7x.checkpoints import mtp_expected_acceptance

    vocab, hidden, widest = 10_000, 8, []

    class RecordingHead(torch.nn.Linear):
        def forward(self, x):
            widest.append(x.reshape(-1, x.shape[-1]).shape[0])
            return super().forward(x)

    class OwnHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.model = types.SimpleNamespace(embed_tokens=torch.nn.Embedding(vocab, hidden), norm=torch.nn.Identity())
            self.lm_head = RecordingHead(hidden, vocab, bias=False)
            self.device = torch.device("cpu")

        def forward(self, ids):
            return types.SimpleNamespace(logits=self.lm_head(self.model.embed_tokens(ids)))

    acceptance = mtp_expected_acceptance(OwnHead(), [[5, 17, 400], [9_999]])
    assert acceptance > 0.9
    assert max(widest) <= 4096


def test_gptq_variant_writes_gptq_v1_tensors_that_reload_as_the_model(tmp_path):
    """What SM70's GPTQ path and stock vLLM's GPTQ Marlin both load: qweight packed along K, group scales,
    v1 zeros (7 = 8 - 1 in every nibble), g_idx in group order; the float32 reference dequantizes it."""
    from safetensors.torch import load_file

    from vllm_sm7x.checkpoints.reference import float_reference_model
    from vllm_sm7x.quantization.gptq_format import dequantize_gptq

    out = make_checkpoint("qwen3-tiny", tmp_path, group_size=64, seed=3, device="cpu", quantization="gptq")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": False,
                                             "sym": True, "checkpoint_format": "gptq"}
    tensors = load_file(str(out / "model.safetensors"))
    prefix = "model.layers.0.mlp.down_proj"
    qweight, scales = tensors[f"{prefix}.qweight"], tensors[f"{prefix}.scales"]
    K, N = qweight.shape[0] * 8, qweight.shape[1]
    assert scales.shape == (K // 64, N) and scales.dtype == torch.float16
    assert torch.equal(tensors[f"{prefix}.qzeros"], torch.full((K // 64, N // 8), 0x77777777, dtype=torch.int32))
    assert torch.equal(tensors[f"{prefix}.g_idx"], torch.arange(K, dtype=torch.int32) // 64)
    model = float_reference_model(out)
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight.double(), dequantize_gptq(qweight, scales, 64).t())


def test_gptq_is_refused_for_presets_with_experts(tmp_path):
    with pytest.raises(ValueError, match="qwen36-35b-a3b-tiny: GPTQ checkpoints are written for presets without "
                                         "experts"):
        make_checkpoint("qwen36-35b-a3b-tiny", tmp_path, quantization="gptq")
