"""FlashAttention for NVIDIA Volta (SM70) and Turing (SM75), with the flash-attn API.

Forward only, fp16: `flash_attn_func`, `flash_attn_varlen_func` (paged with `block_table`, or not),
`flash_attn_with_kvcache` (paged, appending new k/v) and the paged KV-cache write in vLLM's
slot_mapping layout (`write_kv_cache`). Query blocks of up to 16 tokens run on a SIMT split-KV
decode kernel, longer ones on a tensor-core FlashAttention-2 kernel of the GPU's arch path (Volta
m8n8k4 or Turing m16n8k8; VLLM_SM7X_EMULATE=sm70|sm75 picks one on newer GPUs).
"""

__version__ = "0.1.0.dev0"

from flash_attn_v100.flash_attn_interface import (build_info, decode_kernel, decode_occupancy, flash_attn_func,
                                                  flash_attn_varlen_func, flash_attn_with_kvcache, write_kv_cache)

__all__ = ["build_info", "decode_kernel", "decode_occupancy", "flash_attn_func", "flash_attn_varlen_func",
           "flash_attn_with_kvcache", "write_kv_cache"]
