"""Linear-attention (mamba-family) layers on SM70/SM75: Gated DeltaNet for Qwen3.5/3.6 and Qwen3-Next."""
