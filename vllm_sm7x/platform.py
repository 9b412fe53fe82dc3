"""The vLLM platform for SM70/SM75: vLLM's CUDA platform with the decisions these GPUs need."""
from __future__ import annotations

import os

from vllm.platforms.cuda import CudaPlatform, _BackendCandidate
from vllm.platforms.interface import DeviceCapability

from vllm_sm7x.activation import PATH_CAPABILITY, current_activation
from vllm_sm7x.attention.selection import accept_backend_alias, rank_flash_attn_v100_first
from vllm_sm7x.op_policy import custom_ops_for, ir_priority_for, serving_refusal, vllm_custom_allreduce_runs
from vllm_sm7x.profiles.engine import mark_parser_defaults


class Sm7xPlatform(CudaPlatform):
    """Selected by `vllm_sm7x.register` only when every visible GPU is SM70/SM75 or
    VLLM_SM7X_EMULATE is set. `_enum` stays CUDA, so vLLM treats it as CUDA everywhere."""

    @classmethod
    def get_device_capability(cls, device_id: int = 0) -> DeviceCapability | None:
        # Under emulation vLLM must make the choices it makes on the emulated card (fp16 by default,
        # no FP8, no bf16, the same kernel gates), so it sees the emulated capability.
        activation = current_activation()
        if activation.emulated:
            major, minor = PATH_CAPABILITY[activation.path]
            return DeviceCapability(major=major, minor=minor)
        return super().get_device_capability(device_id)

    @classmethod
    def use_custom_allreduce(cls) -> bool:
        # vLLM's custom all-reduce is a kernel of vLLM's own library: kept where that library has code for
        # the GPUs (a vLLM built for sm_70 on a V100; PyPI's on Turing and under emulation), else NCCL.
        return super().use_custom_allreduce() and vllm_custom_allreduce_runs()

    @classmethod
    def pre_register_and_update(cls, parser=None) -> None:
        super().pre_register_and_update(parser)
        if parser is not None:
            accept_backend_alias(parser)
            mark_parser_defaults(parser)

    @classmethod
    def get_valid_backends(cls, device_capability, attn_selector_config, num_heads=None):
        valid, invalid = super().get_valid_backends(device_capability, attn_selector_config, num_heads)
        return rank_flash_attn_v100_first(valid, invalid, device_capability, attn_selector_config, _BackendCandidate)

    @classmethod
    def apply_config_platform_defaults(cls, vllm_config) -> None:
        # Runs before vLLM appends its own "all"/"none" default, so an unset choice is ours to make.
        super().apply_config_platform_defaults(vllm_config)
        config = vllm_config.compilation_config
        config.custom_ops = custom_ops_for(current_activation().path, config.custom_ops)

    @classmethod
    def get_default_ir_op_priority(cls, vllm_config):
        priority = ir_priority_for(current_activation().path)
        if priority is None:
            return super().get_default_ir_op_priority(vllm_config)
        from vllm.config.kernel import IrOpPriorityConfig

        return IrOpPriorityConfig.with_default(priority)

    @classmethod
    def check_and_update_config(cls, vllm_config) -> None:
        super().check_and_update_config(vllm_config)
        # FlashInfer's top-k/top-p sampling kernels ship no SM70 code and would JIT-compile on SM75:
        # sample with PyTorch unless the user chose otherwise. Set before vLLM spawns its engine core,
        # which inherits it.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        model = vllm_config.model_config
        if model is not None:
            refusal = serving_refusal(current_activation().path, (model.architectures or ["model"])[0],
                                      model.is_moe, model.quantization)
            if refusal:
                raise ValueError(refusal)
