"""Applies repetition penalties in PyTorch on the SM70 path, where `vllm._C` has no code. See the index
in vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

from vllm_sm7x import activation


def repetition_penalties_without_c() -> bool:
    """On the SM70 path, vllm._custom_ops.apply_repetition_penalties becomes vLLM's own PyTorch form
    (same arguments, in place; the sampler imports the name at each call). Returns True if it replaced it."""
    import vllm._custom_ops as ops

    if (activation.current_activation().path != "sm70"
            or ops.apply_repetition_penalties is ops.apply_repetition_penalties_torch):
        return False
    ops.apply_repetition_penalties = ops.apply_repetition_penalties_torch
    return True
