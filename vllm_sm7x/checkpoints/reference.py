"""A checkpoint written by `make_checkpoint` (AWQ, GPTQ or fp16) loaded back into its transformers model
in float32, quantized weights dequantized: the reference that tells which of two disagreeing engines (ours in
emulation, stock vLLM native) computes the checkpoint's model. It runs a whole model eagerly
(transformers' PyTorch Gated DeltaNet and MoE), so it is for the tiny presets."""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import torch

from vllm_sm7x.quantization.awq_format import dequantize_awq
from vllm_sm7x.quantization.gptq_format import dequantize_gptq

_EXPERT = re.compile(r"(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def _dense_weights(tensors: dict[str, torch.Tensor], quantization: dict | None) -> dict[str, torch.Tensor]:
    """Checkpoint tensors -> nn.Linear-style float32 weights ([out, in]), AWQ or GPTQ layers dequantized."""
    weights = {}
    for name, tensor in tensors.items():
        if name.endswith((".qzeros", ".scales", ".g_idx")):
            continue
        if name.endswith(".qweight"):
            prefix, group_size = name.removesuffix(".qweight"), quantization["group_size"]
            if quantization["quant_method"] == "gptq":
                w = dequantize_gptq(tensor, tensors[f"{prefix}.scales"], group_size)
            else:
                w = dequantize_awq(tensor, tensors[f"{prefix}.qzeros"], tensors[f"{prefix}.scales"], group_size)
            weights[f"{prefix}.weight"] = w.t().float()  # both keep W [in, out]
        else:
            weights[name] = tensor.float()
    return weights


def _fused_experts(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-expert gate/up/down weights -> transformers' fused [E, 2I, H] gate_up_proj and [E, H, I]
    down_proj (the inverse of the split make_checkpoint does)."""
    experts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    fused = {}
    for name, tensor in weights.items():
        match = _EXPERT.match(name)
        if match is None:
            fused[name] = tensor
            continue
        layer, index, projection = match.groups()
        experts.setdefault(layer, {}).setdefault(int(index), {})[projection] = tensor
    for layer, by_index in experts.items():
        ordered = [by_index[e] for e in range(len(by_index))]
        fused[f"{layer}.gate_up_proj"] = torch.stack([torch.cat([p["gate_proj"], p["up_proj"]]) for p in ordered])
        fused[f"{layer}.down_proj"] = torch.stack([p["down_proj"] for p in ordered])
    return fused


def float_reference_model(checkpoint: str | Path, device: str = "cpu"):
    """The checkpoint's causal LM (the text model of a hybrid) in float32 on `device`, eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    checkpoint = Path(checkpoint)
    config_dict = json.loads((checkpoint / "config.json").read_text())
    quantization = config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**{k: v for k, v in config_dict.items() if k != "architectures"})
    hybrid = "text_config" in config_dict
    tensors = load_file(str(checkpoint / "model.safetensors"), device=device)
    weights = _fused_experts(_dense_weights(tensors, quantization))
    if hybrid:  # the text model's weights live under model.language_model; the MTP head is not part of it
        weights = {name.replace("model.language_model.", "model.", 1): tensor for name, tensor in weights.items()
                   if not name.startswith("mtp.")}
    with torch.device(device):
        # eager experts and attention: plain float32 matmuls, no fused or grouped kernels
        model = AutoModelForCausalLM.from_config(config.text_config if hybrid else config, dtype=torch.float32,
                                                 attn_implementation="eager", experts_implementation="eager")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: the reference model does not match the checkpoint "
                         f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def _float32_math():
    """A float32 reference whatever the process set: no TF32 in matmuls or in cuDNN's convolutions
    (the GDN layers' short convolution) inside the block."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def teacher_forced_logprobs(model, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """[len(tokens), vocab] float64 log-probabilities the reference gives each next token after the
    prompt and the tokens before it (one forward pass)."""
    with _float32_math():
        logits = model(torch.tensor([prompt + tokens], device=model.device)).logits
    return logits[0, len(prompt) - 1:-1].double().log_softmax(-1)


def chosen_logprobs(model, prompt: list[int], tokens: list[int]) -> list[float]:
    """The reference's log-probability of each token an engine chose, after the same history."""
    logprobs = teacher_forced_logprobs(model, prompt, tokens)
    return logprobs.gather(1, torch.tensor(tokens, device=model.device)[:, None])[:, 0].tolist()


def router_near_ties(model, prompt: list[int], tokens: list[int], relative_gap: float) -> set[int]:
    """Positions of `tokens` (as sure_disagreements counts them) where some MoE layer's k-th and
    (k+1)-th router logits, for the token that predicts it, lie within relative_gap of that token's
    logit spread: where an fp16 engine's rounding may pick other experts than the float32 model."""
    from vllm_sm7x.checkpoints.routers import recorded_routers, relative_topk_gaps

    with recorded_routers(model) as records, _float32_math():
        model(torch.tensor([prompt + tokens], device=model.device))
    if not records:
        return set()
    closest = relative_topk_gaps(records).min(0).values[len(prompt) - 1:-1]
    return {int(i) for i in torch.nonzero(closest < relative_gap)[:, 0]}


def sure_disagreements(model, prompt: list[int], tokens: list[int], margin: float) -> list[tuple[int, float]]:
    """Teacher-forced check of a greedy continuation: (position, shortfall) wherever the reference
    finds a token more than `margin` nats likelier than the one the engine chose after the same
    history. Every position is checked, not only those before a first divergence."""
    logprobs = teacher_forced_logprobs(model, prompt, tokens)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=model.device)[:, None])[:, 0]
    shortfall = logprobs.max(-1).values - chosen
    return [(int(i), round(float(shortfall[i]), 3)) for i in torch.nonzero(shortfall > margin)[:, 0]]
