"""Build helpers shared by the two wheels (vllm-sm7x and flash-attn-v100)."""
