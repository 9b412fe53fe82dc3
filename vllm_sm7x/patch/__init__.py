"""Every change vllm-sm7x makes to vLLM's own modules, in one index. Each entry: what, why, the
upstream state, and when to remove it. Applied by the general plugin, only on our platform.

| patch | why | remove when |
| --- | --- | --- |
| `vllm_flash_attn.allow_missing_extensions` | vLLM 0.26 imports `vllm.vllm_flash_attn` while importing models (qwen3 -> mm_encoder_attention -> fa_utils), and that package raises ImportError unless `_vllm_fa2_C`/`_vllm_fa3_C` load. FA2/FA3 need sm_80+, so SM70/SM75 builds of vLLM have neither, and no model imports. The patch installs the package without the raise; the FA kernels stay unavailable (vLLM never selects them below sm_80). | vLLM makes that import lazy/optional (not upstream as of 0.26.0). |
| `engine_profile.apply_profile_at_engine_start` | The serving profile (vllm_sm7x/profiles) fills settings the user did not give; vLLM has no hook between parsed arguments and the engine config (the platform's `check_and_update_config` runs after max_model_len and the speculative config are fixed). Wraps `EngineArgs.create_engine_config`; with VLLM_SM7X_PROFILE off it only turns the marked defaults back into plain values. The same wrapper maps `attention_backend="FLASH_ATTN_V100"` given in Python to CUSTOM (the command line's alias is the platform's parser hook). | vLLM offers a platform hook on EngineArgs before the config is built. |
| `marlin_moe_scales.permute_for_each_gemms_k` | vLLM's Marlin MoE (what stock runs for AWQ and GPTQ MoE checkpoints on SM75 when our AWQ method does not claim them: GPTQ, or AWQ with `VLLM_SM7X_STOCK_AWQ=1`) lays out the gate/up scales for K = the expert width instead of the hidden size (`fused_moe/oracle/int_wna16.py`). Where the expert width per GPU is at most the group size (Qwen3.6-35B-A3B at TP4) the model is silently wrong. The wrapper gives each call K = scale groups x group size. | vLLM includes the fix (upstream PR 50196, open as of 0.26.0). |
| `moe_routing.topk_softmax_without_moe_c` | MoE routers call `vllm._custom_ops.topk_softmax`, a `_moe_C` kernel with no sm_70 code. On the SM70 path the module attribute points at our routing kernel (same arguments and outputs, tested against vLLM's). | vLLM ships sm_70 code for `_moe_C`, or routes through a CustomOp the platform can redirect. |
| `sampling_penalties.repetition_penalties_without_c` | Requests with a repetition, presence or frequency penalty (or a checkpoint whose generation_config sets one) reach `vllm._custom_ops.apply_repetition_penalties`, a `_C` kernel with no sm_70 code. On the SM70 path that name points at vLLM's own PyTorch form (`apply_repetition_penalties_torch`, same arguments, in place). | vLLM ships sm_70 code for `_C`, or routes penalties through a CustomOp. |
| `gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel` | In a step that mixes a prompt with running decodes or MTP verifications, vLLM's Qwen3.5/3.6 GDN layer (`_forward_core`) convolves every token and then runs the decodes' and verifications' recurrence through FLA's Triton `fused_sigmoid_gating_delta_rule_update`, a module-level function (decode-only steps our layer class routes itself). The layer module's name is pointed at ours (the recurrent kernel of csrc/gdn with vLLM's arguments); calls ours does not take go to vLLM's. With VLLM_SM7X_GDN_DECODE (the default). | vLLM routes the GDN recurrence through a CustomOp or platform hook. |
| `gdn_ba_proj.replicate_ba_proj_for_awq_sm7x` | Qwen3.5/3.6 AWQ checkpoints quantize `in_proj_b` and `in_proj_a` (v_heads columns each). Split by tensor parallel they can cut AWQ's packed 8-column words (Qwen3.6-27B at TP4: 48 / 4 = 12 columns), which no AWQ kernel loads; vLLM keeps that projection whole on every GPU for its own AWQ/GPTQ configs (`QwenGatedDeltaNetAttention.maybe_disable_tp`, an isinstance check) and slices b and a per rank after it. The wrapper answers the same for `awq_sm7x`. | vLLM asks the quantization config (not its class) whether to replicate. |
| `gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel` | With `VLLM_SM7X_GDN_CONV_PREFILL=1`, Qwen3.5/3.6 GDN prefill runs its causal conv1d on our kernel (csrc/gdn/gdn_conv_prefill.cu) instead of vLLM's Triton one. vLLM's GDN layer calls the module-level function `causal_conv1d_fn` (not a CustomOp), so the layer module's name is pointed at ours; calls ours does not take (other dtypes, widths over 8, Mamba-style prefix-caching arguments) go to vLLM's. | vLLM routes the conv through a CustomOp or platform hook. |
"""
from __future__ import annotations

from vllm_sm7x.patch import (engine_profile, gdn_ba_proj, gdn_conv_prefill, gdn_recurrent, marlin_moe_scales,
                             moe_routing, sampling_penalties, vllm_flash_attn)

PATCHES = {
    "vllm_flash_attn.allow_missing_extensions": vllm_flash_attn.allow_missing_extensions,
    "engine_profile.apply_profile_at_engine_start": engine_profile.apply_profile_at_engine_start,
    "marlin_moe_scales.permute_for_each_gemms_k": marlin_moe_scales.permute_for_each_gemms_k,
    "moe_routing.topk_softmax_without_moe_c": moe_routing.topk_softmax_without_moe_c,
    "sampling_penalties.repetition_penalties_without_c": sampling_penalties.repetition_penalties_without_c,
    "gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel": gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel,
    "gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel": gdn_recurrent.fused_sigmoid_gating_on_sm7x_kernel,
    "gdn_ba_proj.replicate_ba_proj_for_awq_sm7x": gdn_ba_proj.replicate_ba_proj_for_awq_sm7x,
}


def apply_all() -> list[str]:
    """Applies every patch (each is idempotent); returns the names of those that changed something."""
    return [name for name, apply in PATCHES.items() if apply()]
