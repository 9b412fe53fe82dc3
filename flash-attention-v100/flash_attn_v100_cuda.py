"""Compatibility name: installs built for V100 before this package (1Cat-vLLM) shipped their
FlashAttention extension as `flash_attn_v100_cuda`, and users' install checks import it. It is the
same extension as `flash_attn_v100._C`; the supported API is `flash_attn_v100`'s (flash-attn
signatures). The older package's native entry points are not provided."""
from flash_attn_v100 import __version__, build_info, flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache

__all__ = ["__version__", "build_info", "flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache"]


def __getattr__(name: str):
    raise AttributeError(f"flash_attn_v100_cuda.{name} is not provided: flash-attn-v100 keeps this module name only "
                         "for install checks; call flash_attn_v100.flash_attn_func / flash_attn_varlen_func / flash_attn_with_kvcache")
