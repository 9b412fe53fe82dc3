"""FlashAttention for NVIDIA Volta (SM70) and Turing (SM75), with the flash-attn API.

This release carries the paged KV-cache write, `flash_attn_with_kvcache` and
`flash_attn_varlen_func` (paged or not), all on one SIMT kernel built for decode; the tensor-core
prefill kernels and `flash_attn_func` are being built (docs/roadmap.md).
"""

__version__ = "0.1.0.dev0"

from flash_attn_v100.flash_attn_interface import (build_info, flash_attn_varlen_func, flash_attn_with_kvcache,
                                                  write_kv_cache)

__all__ = ["build_info", "flash_attn_varlen_func", "flash_attn_with_kvcache", "write_kv_cache"]
