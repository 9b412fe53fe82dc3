"""Which kernels will run a checkpoint's weights on an arch path, or why the server will refuse them:
the quantization configs' own rules and the platform's refusals, asked before any engine starts
(`vllm-sm7x doctor MODEL`)."""
from __future__ import annotations

from vllm_sm7x.op_policy import serving_refusal


def weights_plan(quantization_config: dict, path: str, architecture: str, is_moe: bool) -> tuple[str, str | None]:
    """(what runs the weights on path "sm70" or "sm75", the refusal the server would raise or None)."""
    from vllm_sm7x.quantization.awq_sm7x import AwqSm7xConfig
    from vllm_sm7x.quantization.gptq_sm7x import GptqSm7xConfig

    method = str(quantization_config.get("quant_method") or "").lower() or None
    runs = "fp16 weights" if method is None else f"{method} on vLLM's own kernels"
    for config_class in (AwqSm7xConfig, GptqSm7xConfig):
        try:
            claimed = config_class.claims_on(quantization_config, None, path)  # served with no --quantization
        except ValueError as error:  # a switch that hands the checkpoint to kernels this path lacks
            return runs, str(error)
        if claimed:
            try:
                config_class.from_config(quantization_config)
            except ValueError as error:
                return config_class.SERVES_AS, str(error)
            return config_class.SERVES_AS, serving_refusal(path, architecture, is_moe, config_class.get_name())
    return runs, serving_refusal(path, architecture, is_moe, method)
