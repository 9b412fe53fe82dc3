"""Keeps Qwen3.5/3.6 GDN layers' in_proj_ba whole on every GPU under awq_sm7x, as vLLM keeps it for its
own AWQ config. See the index in vllm_sm7x/patch/__init__.py."""
from __future__ import annotations


def replicate_ba_proj_for_awq_sm7x() -> bool:
    """QwenGatedDeltaNetAttention.maybe_disable_tp also answers True for our AWQ config (Qwen3.5's
    separate b and a projections, not Qwen3-Next's interleaved one). Returns True if it replaced it."""
    from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import QwenGatedDeltaNetAttention

    original = QwenGatedDeltaNetAttention.maybe_disable_tp
    if hasattr(original, "sm7x_original"):
        return False

    def maybe_disable_tp(self, quant_config) -> bool:
        from vllm_sm7x.quantization.awq_sm7x import AwqSm7xConfig

        return original(self, quant_config) or (not self.gqa_interleaved_layout
                                                and isinstance(quant_config, AwqSm7xConfig))

    maybe_disable_tp.sm7x_original = original
    QwenGatedDeltaNetAttention.maybe_disable_tp = maybe_disable_tp
    return True
