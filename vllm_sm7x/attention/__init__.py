"""Attention for SM70/SM75 in vLLM: the FLASH_ATTN_V100 backend over flash-attn-v100's kernels."""
