"""Applies the serving profile when vLLM builds its engine config (EngineArgs.create_engine_config),
the last point where the settings it fills are still arguments. See the index in
vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

import functools

_MARK = "_vllm_sm7x_profile"


def apply_profile_at_engine_start() -> bool:
    """Wraps EngineArgs.create_engine_config once; returns True if it wrapped it now."""
    from vllm.engine.arg_utils import EngineArgs

    original = EngineArgs.create_engine_config
    if getattr(original, _MARK, False):
        return False

    @functools.wraps(original)
    def create_engine_config(self, *args, **kwargs):
        from vllm_sm7x.attention.selection import translate_backend_alias
        from vllm_sm7x.profiles.engine import apply_profile, profile_mode, restore_marked_defaults

        translate_backend_alias(self)  # LLM(attention_backend="FLASH_ATTN_V100"), as the command line takes it
        mode = profile_mode()
        if mode != "off":
            apply_profile(self, mode)
        restore_marked_defaults(self)
        return original(self, *args, **kwargs)

    setattr(create_engine_config, _MARK, True)
    EngineArgs.create_engine_config = create_engine_config
    return True
