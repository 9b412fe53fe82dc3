"""`awq_sm7x`: AWQ checkpoints on SM70/SM75 through our tensor-core kernels.

Claims `quant_method: awq` checkpoints (with no --quantization flag, or with awq / awq_marlin /
auto_awq / marlin) only while the vllm-sm7x platform is active, so other GPUs keep stock vLLM.
Weights load in AWQ GEMM format and are converted once, on the GPU, to the kernel layout.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from vllm.model_executor.layers.linear import LinearBase, LinearMethodBase, UnquantizedLinearMethod
from vllm.model_executor.layers.quantization import register_quantization_config
from vllm.model_executor.layers.quantization.base_config import QuantizationConfig
from vllm.model_executor.layers.quantization.utils.quant_utils import is_layer_skipped
from vllm.model_executor.parameter import GroupQuantScaleParameter, PackedvLLMParameter

from vllm_sm7x import activation, envs
from vllm_sm7x.activation import current_activation, kernel_path
from vllm_sm7x.ops.awq import awq_linear, linear_row_ranges
from vllm_sm7x.quantization.awq_format import SUPPORTED_GROUP_SIZES, AwqKernelWeight, to_kernel_layout

logger = logging.getLogger(__name__)

NAME = "awq_sm7x"
PACK_FACTOR = 8  # int4 values per int32
# What users may pass as --quantization for an AWQ checkpoint; all mean "the AWQ kernels".
CLAIMED_USER_METHODS = (None, "awq", "awq_marlin", "auto_awq", "marlin", NAME)


def checkpoint_method_claimed(hf_quant_cfg: dict, user_quant: str | None, quant_method: str,
                              claimed_user_methods: tuple) -> bool:
    """Whether a checkpoint of quant_method, served with --quantization user_quant, is one our config takes."""
    return str(hf_quant_cfg.get("quant_method", "")).lower() == quant_method and user_quant in claimed_user_methods


class Sm7xKernelsConfig:
    """What every config that runs our kernels tells vLLM: fp16 activations, from SM70, and that it takes
    the checkpoints its claims_on(hf_quant_cfg, user_quant, path) rule names on the active arch path."""

    @classmethod
    def get_supported_act_dtypes(cls) -> list[torch.dtype]:
        return [torch.float16]  # Volta and Turing tensor cores have no bf16

    @classmethod
    def get_min_capability(cls) -> int:
        return 70

    @classmethod
    def override_quantization_method(cls, hf_quant_cfg, user_quant, hf_config=None) -> str | None:
        # Read through the activation module (tests patch it there for every config).
        return cls.get_name() if cls.claims_on(hf_quant_cfg, user_quant, activation.current_activation().path) else None


@register_quantization_config(NAME)
class AwqSm7xConfig(Sm7xKernelsConfig, QuantizationConfig):
    def __init__(self, group_size: int, modules_to_not_convert: list[str] | None = None) -> None:
        super().__init__()
        self.group_size = group_size
        self.modules_to_not_convert = modules_to_not_convert or []

    def __repr__(self) -> str:
        return f"AwqSm7xConfig(group_size={self.group_size}, modules_to_not_convert={self.modules_to_not_convert})"

    @classmethod
    def get_name(cls) -> str:
        return NAME

    @classmethod
    def get_config_filenames(cls) -> list[str]:
        return ["quant_config.json", "quantize_config.json"]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AwqSm7xConfig:
        bits = cls.get_from_keys(config, ["w_bit", "bits"])
        group_size = cls.get_from_keys(config, ["q_group_size", "group_size"])
        zero_point = cls.get_from_keys_or(config, ["zero_point"], True)
        version = str(cls.get_from_keys_or(config, ["version"], "gemm")).lower()
        if bits != 4:
            raise ValueError(f"AWQ with {bits}-bit weights is not supported on SM70/SM75: only 4-bit AWQ is; use a "
                             "4-bit export of the model (w_bit 4, as the published Qwen3.5/3.6 AWQ checkpoints)")
        if group_size not in SUPPORTED_GROUP_SIZES:
            raise ValueError(f"AWQ group size {group_size} is not supported on SM70/SM75: use a checkpoint "
                             f"quantized with group size {' / '.join(map(str, SUPPORTED_GROUP_SIZES))}")
        if not zero_point:
            raise ValueError("AWQ without zero points is not supported on SM70/SM75: use a zero_point=true export")
        if version != "gemm":
            raise ValueError(f"AWQ version '{version}' is not supported on SM70/SM75: use a GEMM-format export "
                             "(\"version\": \"gemm\")")
        if cls.get_from_keys_or(config, ["desc_act"], False):
            raise ValueError("AWQ with act-order (desc_act: true, input channels permuted) is not supported on "
                             "SM70/SM75: the kernels read K in order; use an export without act-order")
        if cls.get_from_keys_or(config, ["lm_head"], False):
            raise ValueError("AWQ with a quantized lm_head (\"lm_head\": true) is not supported on SM70/SM75: use "
                             "a checkpoint whose lm_head is fp16")
        return cls(group_size, cls.get_from_keys_or(config, ["modules_to_not_convert"], None))

    def apply_vllm_mapper(self, hf_to_vllm_mapper) -> None:
        """Full Hugging Face names in modules_to_not_convert (model.language_model.layers.0...) become the
        names vLLM's modules have (language_model.model.layers.0...), as vLLM's own AWQ config does."""
        if self.modules_to_not_convert:
            self.modules_to_not_convert = hf_to_vllm_mapper.apply_list(self.modules_to_not_convert)

    # What the server serves it with, in `vllm-sm7x doctor`'s words.
    SERVES_AS = "AWQ on vllm-sm7x's tensor-core kernels (awq_sm7x)"

    @classmethod
    def claims_on(cls, hf_quant_cfg: dict, user_quant: str | None, path: str | None) -> bool:
        """Whether this config takes the checkpoint on arch path "sm70"/"sm75" (None: plugin inactive).
        VLLM_SM7X_STOCK_AWQ=1 on the sm70 path is refused: vLLM's own AWQ kernels need SM75, and vLLM's
        refusal would not name the switch."""
        if path is None or not checkpoint_method_claimed(hf_quant_cfg, user_quant, "awq", CLAIMED_USER_METHODS):
            return False
        if envs.VLLM_SM7X_STOCK_AWQ and path == "sm70":
            raise ValueError("VLLM_SM7X_STOCK_AWQ=1 leaves AWQ checkpoints to vLLM's own AWQ kernels, which need "
                             "SM75 or newer (this is the SM70 path: V100): unset VLLM_SM7X_STOCK_AWQ to serve it on "
                             "vllm-sm7x's AWQ kernels")
        return not envs.VLLM_SM7X_STOCK_AWQ

    def get_quant_method(self, layer: torch.nn.Module, prefix: str):
        from vllm.model_executor.layers.fused_moe import RoutedExperts

        if isinstance(layer, RoutedExperts):
            if is_layer_skipped(prefix, self.modules_to_not_convert, self.packed_modules_mapping,
                                skip_with_substr=True):
                if prefix.startswith("mtp."):  # the drafter of an MoE checkpoint whose MTP head stayed fp16
                    raise NotImplementedError(
                        f"{prefix}: this checkpoint leaves its MTP head's experts unquantized, and SM70/SM75 serve "
                        "mixture-of-experts layers only through the AWQ expert GEMM: serve it without MTP (no "
                        "--speculative-config)")
                raise NotImplementedError(
                    f"{prefix}: this checkpoint leaves its experts unquantized (modules_to_not_convert), and "
                    "SM70/SM75 serve mixture-of-experts layers only through the AWQ expert GEMM: use a checkpoint "
                    "with AWQ experts")
            from vllm_sm7x.quantization.awq_moe import AwqSm7xMoEMethod

            return AwqSm7xMoEMethod(self, layer.moe_config, prefix)
        if isinstance(layer, LinearBase):
            if is_layer_skipped(prefix, self.modules_to_not_convert, self.packed_modules_mapping,
                                skip_with_substr=True):
                return UnquantizedLinearMethod()
            return AwqSm7xLinearMethod(self, prefix)
        return None


class AwqSm7xLinearMethod(LinearMethodBase):
    """Loads AWQ GEMM-format shards, converts them to the kernel layout, runs ops.awq.awq_linear."""

    def __init__(self, config: AwqSm7xConfig, prefix: str = "") -> None:
        self.config = config
        self.prefix = prefix
        # Decided now, not in apply(): torch.compile traces apply() and must see a constant.
        self.kernel_path = kernel_path()
        _log_gemm_path_once(current_activation().path or self.kernel_path, config.group_size)

    def create_weights(self, layer: torch.nn.Module, input_size_per_partition: int,
                       output_partition_sizes: list[int], input_size: int, output_size: int,
                       params_dtype: torch.dtype, **extra_weight_attrs) -> None:
        group = self.config.group_size
        output_size_per_partition = sum(output_partition_sizes)
        check_linear_shard(self.prefix, "AWQ", input_size_per_partition, output_partition_sizes, group, params_dtype)
        weight_loader = extra_weight_attrs.get("weight_loader")
        groups = input_size_per_partition // group
        packed = dict(input_dim=0, output_dim=1, packed_dim=1, packed_factor=PACK_FACTOR, weight_loader=weight_loader)
        layer.register_parameter("qweight", PackedvLLMParameter(
            data=torch.empty(input_size_per_partition, output_size_per_partition // PACK_FACTOR, dtype=torch.int32),
            **packed))
        layer.register_parameter("qzeros", PackedvLLMParameter(
            data=torch.empty(groups, output_size_per_partition // PACK_FACTOR, dtype=torch.int32), **packed))
        layer.register_parameter("scales", GroupQuantScaleParameter(
            data=torch.empty(groups, output_size_per_partition, dtype=params_dtype), input_dim=0, output_dim=1,
            weight_loader=weight_loader))

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        kernel = to_kernel_layout(layer.qweight.data, layer.qzeros.data, layer.scales.data, self.config.group_size)
        del layer.qweight, layer.qzeros, layer.scales
        self.install_kernel_weight(layer, kernel)

    def install_kernel_weight(self, layer: torch.nn.Module, kernel: AwqKernelWeight) -> None:
        """The converted weight becomes the layer's (qweight, scale_zero), tuned first where asked."""
        if envs.VLLM_SM7X_AWQ_TUNING and kernel.qweight.is_cuda:
            from vllm_sm7x.quantization.awq_tuning import ensure_tuned

            ensure_tuned(kernel, self.kernel_path, envs.VLLM_SM7X_AWQ_TUNING)
        layer.register_parameter("qweight", torch.nn.Parameter(kernel.qweight, requires_grad=False))
        layer.register_parameter("scale_zero", torch.nn.Parameter(kernel.scale_zero, requires_grad=False))

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return awq_linear(x, AwqKernelWeight(layer.qweight, layer.scale_zero, self.config.group_size), bias,
                          path=self.kernel_path)


def check_linear_shard(prefix: str, format_name: str, input_size_per_partition: int,
                       output_partition_sizes: list[int], group: int, params_dtype: torch.dtype) -> None:
    """What the kernels need of one rank's shard of a 4-bit linear layer (AWQ, or GPTQ converted to its
    layout): K on group boundaries, 8-column words whole in every merged part, fp16."""
    output_size_per_partition = sum(output_partition_sizes)
    if input_size_per_partition % group:
        raise ValueError(
            f"{prefix}: {input_size_per_partition} input features per rank is not a multiple of the {format_name} "
            f"group size {group} (row-parallel shards must split K on group boundaries): lower the "
            "tensor-parallel size")
    if output_size_per_partition % PACK_FACTOR:
        raise ValueError(f"{prefix}: {output_size_per_partition} output features per rank is not a "
                         f"multiple of {PACK_FACTOR}: lower the tensor-parallel size")
    # Merged layers (qkv, gate_up) load each part at its packed column offset.
    ragged = [size for size in output_partition_sizes if size % PACK_FACTOR]
    if ragged:
        raise ValueError(f"{prefix}: the merged parts' output features per rank {output_partition_sizes} "
                         f"include {ragged[0]}, not a multiple of {PACK_FACTOR} ({format_name} packs {PACK_FACTOR} "
                         "columns per int32): lower the tensor-parallel size")
    if params_dtype != torch.float16:
        raise ValueError(f"{prefix}: {format_name} on SM70/SM75 runs in float16, not {params_dtype}: use --dtype "
                         "float16 (the default on these GPUs)")


@functools.cache
def _log_gemm_path_once(path: str, group_size: int) -> None:
    rows = linear_row_ranges()
    logger.info("vllm-sm7x AWQ GEMM: %s path, group size %d (tensor-core kernels: fused up to %d rows, tiled up "
                "to %d, dequantise + cuBLAS above)", path, group_size, rows["fused"], rows["tiled"])
