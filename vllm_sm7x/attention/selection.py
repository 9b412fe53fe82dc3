"""How users name our attention backend. vLLM's AttentionBackendEnum is closed, so the backend is
registered as CUSTOM; the spelling users copy from our docs, `--attention-backend FLASH_ATTN_V100`,
is translated on the command line (in Python, pass attention_backend="CUSTOM")."""
from __future__ import annotations

import argparse

BACKEND_CLASS = "vllm_sm7x.attention.backend.FlashAttnV100Backend"
ALIASES = {"FLASH_ATTN_V100": "CUSTOM"}


def register_backend() -> None:
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend as register

    register(AttentionBackendEnum.CUSTOM, BACKEND_CLASS)


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
