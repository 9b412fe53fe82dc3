"""How our attention backend is chosen and named. vLLM's AttentionBackendEnum is closed, so the
backend is registered as CUSTOM; the spelling users copy from our docs, FLASH_ATTN_V100, is translated
on the command line (`--attention-backend`) and in Python (`LLM(attention_backend=...)`, EngineArgs)
before vLLM parses it; in `--attention-config` JSON write CUSTOM.
Without that flag our platform ranks it first wherever it supports the layer (fp16, head size
64/128/256, fp16 or fp8_e5m2 KV cache, decoder attention); other layers keep vLLM's own order (TRITON_ATTN).
`--attention-backend TRITON_ATTN` opts out."""
from __future__ import annotations

import argparse
import importlib.util

BACKEND_CLASS = "vllm_sm7x.attention.backend.FlashAttnV100Backend"
ALIASES = {"FLASH_ATTN_V100": "CUSTOM"}


def register_backend() -> None:
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend as register

    register(AttentionBackendEnum.CUSTOM, BACKEND_CLASS)


def rank_flash_attn_v100_first(valid: list, invalid: dict, device_capability, selector_config,
                               candidate: type) -> tuple[list, dict]:
    """vLLM's ranked candidates (CudaPlatform.get_valid_backends) with FLASH_ATTN_V100 ahead of them
    when it supports this layer; otherwise its reasons join vLLM's list of rejected backends.
    `candidate` is vLLM's (backend_class, backend, priority) tuple type."""
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    backend = AttentionBackendEnum.CUSTOM
    try:
        if backend.get_path() != BACKEND_CLASS:
            return valid, invalid  # CUSTOM belongs to another plugin
    except ValueError:  # not registered: this process did not load our general plugin
        return valid, invalid
    first = min((candidate.priority for candidate in valid), default=0) - 1
    if importlib.util.find_spec("flash_attn_v100") is None:
        reasons = ["flash-attn-v100 is not installed: pip install flash-attn-v100 (see the README)"]
        return valid, {**invalid, backend: (first, reasons)}
    from vllm_sm7x.attention.backend import FlashAttnV100Backend

    reasons = FlashAttnV100Backend.validate_configuration(device_capability=device_capability,
                                                          **selector_config._asdict())
    if reasons:
        return valid, {**invalid, backend: (first, reasons)}
    return [candidate(FlashAttnV100Backend, backend, first), *valid], invalid


def accept_backend_alias(parser: argparse.ArgumentParser) -> None:
    """Make `--attention-backend FLASH_ATTN_V100` (any case) mean CUSTOM; idempotent."""
    action = parser._option_string_actions.get("--attention-backend")
    if action is None or getattr(action.type, "sm7x_alias", False):
        return
    original = action.type or str

    def parse(value: str):
        return original(ALIASES.get(value.upper(), value))

    parse.sm7x_alias = True
    action.type = parse


def translate_backend_alias(engine_args) -> None:
    """EngineArgs.attention_backend given in Python as FLASH_ATTN_V100 (any case) becomes CUSTOM, as on the
    command line; called before vLLM converts the name (EngineArgs.create_engine_config)."""
    backend = getattr(engine_args, "attention_backend", None)
    if isinstance(backend, str) and backend.upper() in ALIASES:
        engine_args.attention_backend = ALIASES[backend.upper()]
