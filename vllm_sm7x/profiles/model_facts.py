"""What a profile needs to know about a checkpoint, read from its folder: config.json (Qwen3.5/3.6
nest the language model under `text_config`), the quantization, and whether the safetensors files
really contain MTP weights (many AWQ exports drop them; never assume)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MTP_PREFIXES = ("mtp.", "model.mtp.")


class ModelFactsError(ValueError):
    """A checkpoint folder that cannot be profiled, with what is missing."""


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    hidden_size: int
    num_layers: int
    full_attention_layers: int  # layers with a KV cache
    linear_attention_layers: int  # Gated DeltaNet layers (a fixed-size state per sequence)
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    linear_k_heads: int
    linear_v_heads: int
    linear_k_dim: int
    linear_v_dim: int
    conv_kernel: int
    ssm_state_bytes_per_element: int  # 4 when the checkpoint asks for an fp32 recurrent state
    intermediate_size: int
    num_experts: int  # 0: dense MLP
    experts_per_token: int
    moe_intermediate_size: int
    shared_expert_intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    mtp_layers: int  # in the config
    has_mtp_weights: bool  # in the files (None-free: False when no file lists them)
    has_vision: bool
    quant_method: str | None
    weight_bits: int  # 16 unquantized
    group_size: int
    checkpoint_bytes: int | None  # safetensors on disk; None unless every weight file is there
    quantization_config: dict = field(default_factory=dict, hash=False, compare=False)  # as config.json has it

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_hybrid(self) -> bool:
        return self.linear_attention_layers > 0

    @property
    def is_qwen35(self) -> bool:
        return self.architecture.startswith("Qwen3_5")


def checkpoint_folder(model: str | Path, revision: str | None = None, download_dir: str | None = None) -> Path:
    """The folder of `--model`: a local path, or the snapshot of a Hugging Face model id already downloaded
    into the default cache with all its safetensors weight files. The profile is decided before vLLM
    downloads anything, so an id not yet downloaded is not profiled on the start that downloads it; the
    error says how to have it profiled from the start."""
    folder = Path(model)
    if folder.is_dir():
        return folder
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(model))
    except HFValidationError:
        raise ModelFactsError(f"{model}: no such folder") from None
    if download_dir:  # vLLM puts the weights there and config.json in the default cache: two folders
        raise ModelFactsError(f"{model} with --download-dir: pass the model's folder as --model to have it profiled")
    config = try_to_load_from_cache(str(model), "config.json", revision=revision)
    if not isinstance(config, str):  # None, or the cache's record that the file does not exist
        raise ModelFactsError(f"{model} is not a folder, and no download of it is in the Hugging Face cache: "
                              f"download it first (`hf download {model}`) or pass its folder")
    folder = Path(config).parent
    try:
        files = weight_files(folder)
    except (ValueError, AttributeError, TypeError, OSError) as error:
        raise ModelFactsError(f"{folder}: its safetensors index cannot be read ({type(error).__name__}: {error})") \
            from error
    missing = [str(path.relative_to(folder)) for path in files if not path.is_file()]
    if missing or not files:
        raise ModelFactsError(
            f"{model}: its download in the Hugging Face cache is incomplete or has no safetensors weights ("
            + (f"{len(missing)} of {len(files)} weight files missing, e.g. {missing[0]}" if missing else "none found")
            + f"): finish it (`hf download {model}`) or pass its folder")
    return folder


def weight_files(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors files: those its index names (subfolders included), else the folder's own."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return [model_dir / name for name in sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))]
    return sorted(model_dir.glob("*.safetensors"))


def read_model_facts(model_dir: str | Path) -> ModelFacts:
    """The checkpoint's facts; a config or index that cannot be read as one (missing or null fields, not
    JSON objects, unreadable files) raises ModelFactsError naming the folder and the cause."""
    try:
        return _read_model_facts(Path(model_dir))
    except ModelFactsError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError, OSError, struct.error) as error:
        raise ModelFactsError(f"{model_dir}: cannot read the checkpoint ({type(error).__name__}: {error})") from error


def _read_model_facts(model_dir: Path) -> ModelFacts:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelFactsError(f"{model_dir} has no config.json: pass a local checkpoint folder")
    config = json.loads(config_path.read_text())
    text = config.get("text_config") or config
    architecture = (config.get("architectures") or ["unknown"])[0]
    layers = int(text["num_hidden_layers"])
    layer_types = text.get("layer_types")
    if layer_types is None and text.get("full_attention_interval"):
        interval = int(text["full_attention_interval"])
        layer_types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(layers)]
    full = layers if layer_types is None else sum(t == "full_attention" for t in layer_types)
    heads = int(text["num_attention_heads"])
    quant = config.get("quantization_config") or text.get("quantization_config") or {}
    files = weight_files(model_dir)
    return ModelFacts(
        architecture=architecture,
        hidden_size=int(text["hidden_size"]),
        num_layers=layers,
        full_attention_layers=full,
        linear_attention_layers=layers - full,
        num_attention_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads", heads)),
        head_dim=int(text.get("head_dim") or text["hidden_size"] // heads),
        linear_k_heads=int(text.get("linear_num_key_heads", 0)),
        linear_v_heads=int(text.get("linear_num_value_heads", 0)),
        linear_k_dim=int(text.get("linear_key_head_dim", 0)),
        linear_v_dim=int(text.get("linear_value_head_dim", 0)),
        conv_kernel=int(text.get("linear_conv_kernel_dim", 4)),
        ssm_state_bytes_per_element=4 if text.get("mamba_ssm_dtype") == "float32" else 2,
        intermediate_size=int(text.get("intermediate_size", 0)),
        num_experts=int(text.get("num_experts", 0) or 0),
        experts_per_token=int(text.get("num_experts_per_tok", 0) or 0),
        moe_intermediate_size=int(text.get("moe_intermediate_size", 0) or 0),
        shared_expert_intermediate_size=int(text.get("shared_expert_intermediate_size", 0) or 0),
        vocab_size=int(text["vocab_size"]),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        max_position_embeddings=int(text.get("max_position_embeddings", 4096)),
        mtp_layers=int(text.get("mtp_num_hidden_layers", 0) or 0),
        has_mtp_weights=any(name.startswith(MTP_PREFIXES) for name in weight_names(model_dir)),
        has_vision="vision_config" in config,
        quant_method=quant.get("quant_method"),
        weight_bits=int(quant.get("bits", quant.get("w_bit", 16)) or 16),
        group_size=int(quant.get("group_size", quant.get("q_group_size", 128)) or 128),
        checkpoint_bytes=sum(f.stat().st_size for f in files) if files and all(f.is_file() for f in files) else None,
        quantization_config=quant,
    )


def weight_names(model_dir: Path) -> list[str]:
    """Tensor names of the checkpoint: the safetensors index's weight map, else each file's header."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text()).get("weight_map", {}))
    names = []
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            names += [name for name in json.loads(f.read(header_len)) if name != "__metadata__"]
    return names
