"""Public functions of flash-attn-v100 over torch.ops.flash_attn_v100, each with a fake
implementation so torch.compile and CUDA graphs can trace it."""
from __future__ import annotations

import json

import torch

import flash_attn_v100._C  # noqa: F401  (registers torch.ops.flash_attn_v100)


@torch.library.register_fake("flash_attn_v100::write_kv_cache")
def _write_kv_cache_fake(key, value, key_cache, value_cache, slot_mapping) -> None:
    return None


def write_kv_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                   slot_mapping: torch.Tensor) -> None:
    """Store key/value [num_tokens, num_kv_heads, head_size] (fp16) into paged caches
    [num_blocks, block_size, num_kv_heads, head_size] at `slot_mapping` (int64; slot =
    block * block_size + offset, negative slots are padding and skipped). vLLM's layout."""
    torch.ops.flash_attn_v100.write_kv_cache(key, value, key_cache, value_cache, slot_mapping)


def build_info() -> dict:
    """The archs this build was compiled for."""
    return json.loads(torch.ops.flash_attn_v100.build_info())
