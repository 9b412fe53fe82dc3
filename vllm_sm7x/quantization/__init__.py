"""Quantized weights on SM70/SM75: formats, converters, and (next) the vLLM quantization config."""
