"""AWQ mixture-of-experts layers on SM70/SM75 (Qwen3.6-35B-A3B, Qwen3.5-122B-A10B): the experts of
each projection in one kernel-layout stack, run by the grouped AWQ GEMM (one launch over every
routed row), with routing and the weighted combine on our kernels and PyTorch, so nothing calls
vLLM's _moe_C (which has no sm_70 code).

vLLM runs the MoE layer inside its opaque `vllm.moe_forward` op, so apply() sees concrete shapes.
Where the router is a plain softmax top-k (Qwen MoE) the method is monolithic: vLLM hands over the router
logits and skips its router, and the decode kernels route themselves (one launch fewer per layer).
Shared experts are ordinary linear layers (the AWQ linear method) that vLLM's runner adds, as it
applies any routed scaling factor. Tensor parallel (experts split by width) and expert parallel work,
data parallel too on vLLM's default all-gather/reduce-scatter dispatch; vLLM's all-to-all backends
(DeepEP and the like) would replace the method with their modular kernels and are refused.
"""
from __future__ import annotations

import torch
from vllm.config import get_current_vllm_config
from vllm.logger import init_logger
from vllm.model_executor.layers.fused_moe import FusedMoEMethodBase, FusedMoeWeightScaleSupported
from vllm.model_executor.layers.fused_moe.activation import MoEActivation
from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.utils import set_weight_attrs

from vllm_sm7x import envs
from vllm_sm7x.activation import kernel_path
from vllm_sm7x.ops.moe import awq_moe, awq_moe_routed
from vllm_sm7x.quantization.awq_format import AwqKernelWeight, experts_to_kernel_layout
from vllm_sm7x.quantization.awq_sm7x import PACK_FACTOR

# The AWQ GEMM-format tensors vLLM's FusedMoE loader fills, per projection: w13 holds each expert's
# gate (columns 0..I-1) and up (I..2I-1) projections, w2 its down projection.
PROJECTIONS = ("w13", "w2")

logger = init_logger(__name__)

# vLLM's routers whose choice the expert kernels make themselves: softmax over the experts, then top-k,
# renormalised over the k or not (FusedTopKRouter; Qwen MoE models).
SOFTMAX_TOPK_ROUTING = (RoutingMethodType.Default, RoutingMethodType.Renormalize, RoutingMethodType.RenormalizeNaive)
MAX_KERNEL_ROUTED_EXPERTS, MAX_KERNEL_TOP_K = 1024, 32  # csrc/moe/moe_routing.h (tests/ut/test_awq_config.py checks)


def why_vllm_routes(layer: torch.nn.Module, moe) -> str | None:
    """None when the layer's routing can run inside our expert kernels (the method is then monolithic:
    vLLM's runner passes the router logits and skips its router); else why vLLM's router must pick."""
    if not envs.VLLM_SM7X_MOE_ROUTER_IN_KERNEL:
        return "VLLM_SM7X_MOE_ROUTER_IN_KERNEL=0"
    if (moe.routing_method not in SOFTMAX_TOPK_ROUTING or layer.scoring_func != "softmax" or layer.use_grouped_topk
            or layer.custom_routing_function is not None or layer.e_score_correction_bias is not None):
        return f"the router is not a plain softmax top-k ({moe.routing_method.name})"
    if moe.is_lora_enabled:
        return "LoRA (vLLM's MoE LoRA wraps a modular method)"
    parallel = moe.moe_parallel_config
    if parallel.use_ep or parallel.dp_size > 1:
        return "expert or data parallel (vLLM's router and dispatch place the tokens)"
    if moe.num_experts > MAX_KERNEL_ROUTED_EXPERTS or moe.experts_per_token > MAX_KERNEL_TOP_K:
        return (f"{moe.num_experts} experts top-{moe.experts_per_token} is past the kernels' routing "
                f"({MAX_KERNEL_ROUTED_EXPERTS} experts, top-{MAX_KERNEL_TOP_K})")
    model_config = get_current_vllm_config().model_config
    if model_config is not None and model_config.enable_return_routed_experts:
        return "--enable-return-routed-experts records the picks of vLLM's router"
    return None


class AwqSm7xMoEMethod(FusedMoEMethodBase):
    def __init__(self, config, moe, prefix: str = "") -> None:
        super().__init__(moe)
        self.config = config
        self.prefix = prefix
        self.kernel_path = kernel_path()  # decided once: the op below must see a constant
        self.vllm_routes_because: str | None = "not decided before create_weights"

    def create_weights(self, layer: torch.nn.Module, num_experts: int, hidden_size: int,
                       intermediate_size_per_partition: int, params_dtype: torch.dtype, **extra_weight_attrs) -> None:
        group, inter = self.config.group_size, intermediate_size_per_partition
        if hidden_size % group or inter % group:
            raise ValueError(
                f"{self.prefix}: expert widths hidden {hidden_size} / intermediate per rank {inter} must be "
                f"multiples of the AWQ group size {group} (row-parallel experts split on group boundaries): "
                "lower the tensor-parallel size")
        if params_dtype != torch.float16:
            raise ValueError(f"{self.prefix}: AWQ on SM70/SM75 runs in float16, not {params_dtype}: use --dtype "
                             "float16 (the default on these GPUs)")
        if self.moe is not None and self.moe.has_bias:
            raise NotImplementedError(f"{self.prefix}: experts with bias terms are not supported on SM70/SM75 (the "
                                      "expert GEMM has no bias; Qwen MoE experts have none)")
        if self.moe is not None:
            self.vllm_routes_because = why_vllm_routes(layer, self.moe)
            logger.info_once("vllm-sm7x AWQ MoE: %s",
                             "routing inside the expert kernels (router logits in, no routing launch at decode)"
                             if self.vllm_routes_because is None
                             else f"vLLM's router picks the experts: {self.vllm_routes_because}")
        extra_weight_attrs.pop("intermediate_size_full", None)
        extra_weight_attrs.update(is_transposed=True, quant_method=FusedMoeWeightScaleSupported.GROUP.value)
        shapes = {"w13": (hidden_size, 2 * inter), "w2": (inter, hidden_size)}  # (K, N) of each expert
        for name, (k, n) in shapes.items():
            tensors = {f"{name}_qweight": (torch.int32, (k, n // PACK_FACTOR)),
                       f"{name}_qzeros": (torch.int32, (k // group, n // PACK_FACTOR)),
                       f"{name}_scales": (params_dtype, (k // group, n))}
            for tensor_name, (dtype, shape) in tensors.items():
                parameter = torch.nn.Parameter(torch.empty(num_experts, *shape, dtype=dtype), requires_grad=False)
                layer.register_parameter(tensor_name, parameter)
                set_weight_attrs(parameter, extra_weight_attrs)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        for name in PROJECTIONS:
            stacked = experts_to_kernel_layout(*(getattr(layer, f"{name}_{part}") for part in ("qweight", "qzeros",
                                                                                             "scales")),
                                               self.config.group_size)
            for part in ("qweight", "qzeros", "scales"):
                delattr(layer, f"{name}_{part}")
            layer.register_parameter(f"{name}_qweight", torch.nn.Parameter(stacked.qweight, requires_grad=False))
            layer.register_parameter(f"{name}_scale_zero", torch.nn.Parameter(stacked.scale_zero,
                                                                               requires_grad=False))

    def get_fused_moe_quant_config(self, layer: torch.nn.Module):
        return None  # our own kernels: vLLM's modular MoE kernels are not used

    def select_gemm_impl(self, prepare_finalize, layer: torch.nn.Module):
        raise NotImplementedError(f"{self.prefix}: vLLM's modular MoE kernels (its all-to-all backends, MoE LoRA) "
                                  "are not supported on SM70/SM75 with AWQ experts; use --all2all-backend "
                                  "allgather_reducescatter (the default) and no LoRA on the experts")

    def _experts(self, layer: torch.nn.Module, name: str) -> AwqKernelWeight:
        return AwqKernelWeight(getattr(layer, f"{name}_qweight"), getattr(layer, f"{name}_scale_zero"),
                               self.config.group_size)

    @property
    def is_monolithic(self) -> bool:
        return self.vllm_routes_because is None

    def check_layer(self, layer: torch.nn.Module) -> None:
        """Refuse, by name, what the expert kernels do not compute."""
        if layer.activation != MoEActivation.SILU:
            raise NotImplementedError(f"{self.prefix}: expert activation {layer.activation} is not supported on "
                                      "SM70/SM75 (only SiLU-gated experts, as in Qwen MoE models)")
        if layer.apply_router_weight_on_input:
            raise NotImplementedError(f"{self.prefix}: router weights applied on the input are not supported on "
                                      "SM70/SM75")
        clamped = [name for name in ("swiglu_limit", "swiglu_alpha", "swiglu_beta") if getattr(layer, name, None)
                   is not None]
        if clamped:
            raise NotImplementedError(f"{self.prefix}: a clamped SwiGLU ({', '.join(clamped)}) is not supported on "
                                      "SM70/SM75 (only plain SiLU-gated experts, as in Qwen MoE models)")

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
              shared_experts=None, shared_experts_input=None) -> torch.Tensor:
        self.check_layer(layer)
        ids = topk_ids if layer.expert_map is None else layer.expert_map[topk_ids.long()]  # expert parallel
        return awq_moe(x, self._experts(layer, "w13"), self._experts(layer, "w2"), topk_weights, ids,
                       self.kernel_path)

    def apply_monolithic(self, layer: torch.nn.Module, x: torch.Tensor, router_logits: torch.Tensor,
                         input_ids: torch.Tensor | None = None) -> torch.Tensor:
        self.check_layer(layer)
        return awq_moe_routed(x, self._experts(layer, "w13"), self._experts(layer, "w2"), router_logits, layer.top_k,
                              layer.renormalize, self.kernel_path)
