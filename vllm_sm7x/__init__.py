"""vLLM plugin for NVIDIA Volta (SM70) and Turing (SM75) GPUs.

Entry points only; imports stay inside the functions so that loading the plugin costs nothing on
other GPUs.
"""

__version__ = "0.1.0.dev0"


def register() -> str | None:
    """`vllm.platform_plugins`: our platform on SM70/SM75 (or under VLLM_SM7X_EMULATE), else None."""
    from vllm_sm7x.activation import current_activation, log_activation_once

    activation = current_activation()
    # vLLM swallows exceptions from platform plugins, so a bad setting is logged, not raised.
    log_activation_once(activation)
    return "vllm_sm7x.platform.Sm7xPlatform" if activation.active else None


def register_general() -> None:
    """`vllm.general_plugins`: runs in every vLLM process; registers our kernels and their fake
    implementations where the platform is ours, and everywhere our environment variables' names with
    vLLM (so it does not call them unknown). Idempotent."""
    from vllm_sm7x import envs
    from vllm_sm7x.activation import current_activation

    envs.register_with_vllm()  # even when off: VLLM_SM7X_DISABLE=1 is one of them
    if not current_activation().active:
        return
    from vllm_sm7x import ops, patch
    from vllm_sm7x.attention.selection import register_backend

    patch.apply_all()
    ops.load_kernels()
    register_backend()  # FLASH_ATTN_V100 (as CUSTOM), ranked first by our platform
    if envs.VLLM_SM7X_GDN_DECODE:
        from vllm_sm7x.mamba.gdn import register_gdn_decode

        register_gdn_decode()
    if envs.VLLM_SM7X_GDN_PREFILL:
        from vllm_sm7x.mamba.gdn import register_gdn_prefill

        register_gdn_prefill()
    import vllm_sm7x.quantization.awq_sm7x  # noqa: F401  (registers the awq_sm7x quantization config)
    import vllm_sm7x.quantization.gptq_sm7x  # noqa: F401  (registers the gptq_sm7x quantization config)
