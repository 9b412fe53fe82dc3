"""FlashAttention for NVIDIA Volta (SM70) and Turing (SM75), with the flash-attn API.

This release carries the paged KV-cache write; the attention functions (`flash_attn_func`,
`flash_attn_varlen_func`, `flash_attn_with_kvcache`) are being built (docs/roadmap.md).
"""

__version__ = "0.1.0.dev0"

from flash_attn_v100.flash_attn_interface import build_info, write_kv_cache

__all__ = ["build_info", "write_kv_cache"]
