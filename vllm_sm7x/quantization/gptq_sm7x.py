"""`gptq_sm7x`: 4-bit GPTQ checkpoints on SM70 through the AWQ tensor-core kernels.

vLLM's GPTQ kernels (exllama, Marlin) have no sm_70 code, so a V100/Titan V/CMP 100-210 cannot serve
GPTQ with stock vLLM. A symmetric 4-bit GPTQ weight without act-order is an AWQ weight whose zero point
is 8 (gptq_format.py): this config claims such checkpoints (with no --quantization flag, or gptq /
gptq_marlin / auto_gptq / marlin) while the platform runs the sm70 path, loads them in GPTQ's layout
and converts them once to the AWQ kernels' layout. Turing keeps stock vLLM's GPTQ Marlin kernel.
It subclasses vLLM's GPTQ config, so GPTQ's `dynamic` per-module rules, its scan for the quantized
modules and the model code that asks `isinstance(..., AutoGPTQConfig)` see a GPTQ config.
"""
from __future__ import annotations

import functools
import logging

import torch
from vllm.model_executor.layers.linear import register_weight_loader_v2_supported_method
from vllm.model_executor.layers.quantization import register_quantization_config
from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig
from vllm.model_executor.layers.quantization.utils.gptq_utils import get_dynamic_override, get_linear_quant_method
from vllm.model_executor.parameter import GroupQuantScaleParameter, PackedvLLMParameter, RowvLLMParameter

from vllm_sm7x.quantization.awq_format import SUPPORTED_GROUP_SIZES
from vllm_sm7x.quantization.awq_sm7x import (PACK_FACTOR, AwqSm7xLinearMethod, Sm7xKernelsConfig,
                                              check_linear_shard, checkpoint_method_claimed)
from vllm_sm7x.quantization.gptq_format import gptq_to_kernel_layout

logger = logging.getLogger(__name__)

NAME = "gptq_sm7x"
CLAIMED_USER_METHODS = (None, "gptq", "gptq_marlin", "auto_gptq", "marlin", NAME)


def unsupported_gptq(bits: int, group_size: int, desc_act: bool, is_sym: bool) -> str | None:
    """Why the AWQ kernels cannot run this GPTQ configuration, with what to use instead; None if they can."""
    if bits != 4:
        return (f"GPTQ with {bits}-bit weights is not supported on SM70: only 4-bit GPTQ runs there (on the AWQ "
                "kernels); use a 4-bit export (bits 4) or an AWQ one")
    if not is_sym:
        return "GPTQ without symmetric quantization (sym: false) is not supported: use a sym: true export"
    if group_size not in SUPPORTED_GROUP_SIZES:
        return (f"GPTQ group size {group_size} is not supported on SM70: use a checkpoint quantized with group "
                f"size {' / '.join(map(str, SUPPORTED_GROUP_SIZES))}")
    if desc_act:
        return ("GPTQ with act-order (desc_act: true, input channels regrouped) is not supported on SM70: the "
                "kernels read K in order; use an export without act-order (desc_act: false) or an AWQ one")
    return None


@register_quantization_config(NAME)
class GptqSm7xConfig(Sm7xKernelsConfig, AutoGPTQConfig):
    def __init__(self, weight_bits: int, group_size: int, desc_act: bool, is_sym: bool, lm_head_quantized: bool,
                 dynamic: dict, full_config: dict, modules_in_block_to_quantize: list[str] | None = None) -> None:
        refusal = unsupported_gptq(weight_bits, group_size, desc_act, is_sym)
        if refusal:
            raise ValueError(refusal)
        if lm_head_quantized:
            raise ValueError("GPTQ with a quantized lm_head (\"lm_head\": true) is not supported on SM70: use a "
                             "checkpoint whose lm_head is fp16")
        super().__init__(weight_bits, group_size, desc_act, is_sym, lm_head_quantized, dynamic, full_config,
                         modules_in_block_to_quantize)

    @classmethod
    def get_name(cls) -> str:
        return NAME

    SERVES_AS = "GPTQ repacked at load for vllm-sm7x's AWQ kernels (gptq_sm7x)"

    @classmethod
    def claims_on(cls, hf_quant_cfg: dict, user_quant: str | None, path: str | None) -> bool:
        """Whether this config takes the checkpoint on arch path path: on sm70 only (Turing keeps Marlin)."""
        return path == "sm70" and checkpoint_method_claimed(hf_quant_cfg, user_quant, "gptq", CLAIMED_USER_METHODS)

    def get_quant_method(self, layer: torch.nn.Module, prefix: str):
        from vllm.model_executor.layers.fused_moe import RoutedExperts

        if isinstance(layer, RoutedExperts):
            raise NotImplementedError(
                f"{prefix}: GPTQ mixture-of-experts layers are not supported on SM70 (vLLM's GPTQ expert kernels "
                "have no sm_70 code; ours take AWQ experts): serve an AWQ export of this model")
        # vLLM's GPTQ rules: modules left unquantized, `dynamic` overrides per module (on a copy of the config).
        try:
            return get_linear_quant_method(self, layer, prefix, lambda config: GptqSm7xLinearMethod(config, prefix))
        except ValueError as error:
            # vLLM's override refuses bits/sym pairs it has no kernel for before our method sees the module,
            # in words that name neither the module nor the fix.
            if not str(error).startswith("Unsupported quantization config"):
                raise
            refusal = unsupported_gptq(*(get_dynamic_override(self, prefix, key, default) for key, default in (
                ("bits", self.weight_bits), ("group_size", self.group_size), ("desc_act", self.desc_act),
                ("sym", self.is_sym)))) or str(error)
            raise ValueError(f"{prefix} (by the checkpoint's `dynamic` rules): {refusal}") from error


# vLLM's newer loaders, as for its own GPTQ method: the older ones warn at every merged part's g_idx.
@register_weight_loader_v2_supported_method
class GptqSm7xLinearMethod(AwqSm7xLinearMethod):
    """Loads GPTQ shards (qweight packed along K, group scales), converts them to the AWQ kernels'
    layout, runs ops.awq.awq_linear like the AWQ method."""

    def __init__(self, config: GptqSm7xConfig, prefix: str = "") -> None:
        # A `dynamic` rule may give this module other bits or another group size than the checkpoint's.
        refusal = unsupported_gptq(config.weight_bits, config.group_size, config.desc_act, config.is_sym)
        if refusal:
            raise ValueError(f"{prefix}: {refusal}")
        super().__init__(config, prefix)
        _log_repack_once(config.group_size)

    def create_weights(self, layer: torch.nn.Module, input_size_per_partition: int,
                       output_partition_sizes: list[int], input_size: int, output_size: int,
                       params_dtype: torch.dtype, **extra_weight_attrs) -> None:
        group = self.config.group_size
        output_size_per_partition = sum(output_partition_sizes)
        check_linear_shard(self.prefix, "GPTQ", input_size_per_partition, output_partition_sizes, group, params_dtype)
        weight_loader = extra_weight_attrs.get("weight_loader")
        groups = input_size_per_partition // group
        # The shapes and sharding of vLLM's GPTQ method without act-order (scales split with K).
        layer.register_parameter("qweight", PackedvLLMParameter(
            data=torch.empty(input_size_per_partition // PACK_FACTOR, output_size_per_partition, dtype=torch.int32),
            input_dim=0, output_dim=1, packed_dim=0, packed_factor=PACK_FACTOR, weight_loader=weight_loader))
        layer.register_parameter("g_idx", RowvLLMParameter(
            data=torch.empty(input_size_per_partition, dtype=torch.int32), input_dim=0, weight_loader=weight_loader))
        layer.register_parameter("scales", GroupQuantScaleParameter(
            data=torch.empty(groups, output_size_per_partition, dtype=params_dtype), input_dim=0, output_dim=1,
            weight_loader=weight_loader))
        layer.register_parameter("qzeros", PackedvLLMParameter(
            data=torch.empty(groups, output_size_per_partition // PACK_FACTOR, dtype=torch.int32),
            input_dim=0, output_dim=1, packed_dim=1, packed_factor=PACK_FACTOR, weight_loader=weight_loader))

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        # Symmetric without act-order: every zero is 8 and g_idx[k] = k // G, as vLLM's Marlin path assumes
        # too; both tensors are loaded (the checkpoint has them) and dropped.
        kernel = gptq_to_kernel_layout(layer.qweight.data, layer.scales.data, self.config.group_size)
        del layer.qweight, layer.g_idx, layer.scales, layer.qzeros
        self.install_kernel_weight(layer, kernel)


@functools.cache
def _log_repack_once(group_size: int) -> None:
    logger.info("vllm-sm7x GPTQ: 4-bit symmetric GPTQ, group size %d, repacked once at load for the AWQ kernels "
                "(vLLM's GPTQ kernels have no sm_70 code)", group_size)
