"""Compatibility name: users' install checks import `paged_kv_utils` (1Cat-vLLM's paged KV-cache
helpers). Here it offers the paged KV-cache write in vLLM's slot_mapping layout,
`flash_attn_v100.write_kv_cache`."""
from flash_attn_v100 import __version__, write_kv_cache

__all__ = ["__version__", "write_kv_cache"]


def __getattr__(name: str):
    raise AttributeError(f"paged_kv_utils.{name} is not provided: flash-attn-v100 keeps this module name only for "
                         "install checks; write the cache with paged_kv_utils.write_kv_cache "
                         "(= flash_attn_v100.write_kv_cache)")
