#!/usr/bin/env python3
"""Writes a small local checkpoint directory, AWQ-quantized by our round-to-nearest quantizer, for
tests and smoke runs without downloads.

  python tools/make_checkpoint.py --preset qwen3-tiny --out /tmp/qwen3-tiny-awq [--group-size 128] [--seed 0]

Presets: qwen3-tiny (dense Qwen3, 2 layers). The directory holds config.json, model.safetensors, a
byte-level BPE tokenizer with Qwen's special tokens and a Qwen3.5/3.6-style chat template
(tools/tiny_checkpoint/), and generation_config.json. Random weights, so outputs are meaningless; they
are for checking the serving path.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from tiny_checkpoint.tokenizer import EOS_TOKENS, build_tokenizer  # noqa: E402
from vllm_sm7x.quantization.awq_format import quantize_awq  # noqa: E402

PRESETS = {
    "qwen3-tiny": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=512, hidden_size=256,
                       intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=64, max_position_embeddings=1024, rms_norm_eps=1e-6, rope_theta=1000000.0,
                       tie_word_embeddings=False, hidden_act="silu", torch_dtype="float16"),
}
QUANTIZED_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make_checkpoint(preset: str, out: Path, group_size: int = 128, seed: int = 0) -> Path:
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config_dict = dict(PRESETS[preset])
    config = AutoConfig.for_model(**{k: v for k, v in config_dict.items() if k != "architectures"})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).half()
    tensors = {}
    for name, tensor in model.state_dict().items():
        module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
        if module in QUANTIZED_SUFFIXES:
            qweight, qzeros, scales = quantize_awq(tensor.float().t().contiguous(), group_size)  # W [in, out]
            prefix = name.removesuffix(".weight")
            tensors.update({f"{prefix}.qweight": qweight, f"{prefix}.qzeros": qzeros, f"{prefix}.scales": scales})
        else:
            tensors[name] = tensor.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer = build_tokenizer(config_dict["vocab_size"])
    tokenizer.save_pretrained(str(out))
    eos_ids = tokenizer.convert_tokens_to_ids(EOS_TOKENS)
    config_dict["eos_token_id"] = eos_ids[0]
    config_dict["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group_size,
                                          "zero_point": True, "version": "gemm"}
    (out / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_ids}, indent=2) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--group-size", type=int, default=128, choices=[32, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_checkpoint(args.preset, args.out, args.group_size, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
