"""Pieces of tools/make_checkpoint.py: a small Qwen-style tokenizer and chat template."""
