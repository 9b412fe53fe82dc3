"""A byte-level BPE tokenizer with Qwen's special tokens, trained on generated chat text so small
test models (vocab of a few hundred) get a working tokenizer and chat template."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text()
# Qwen3.5/3.6 markers that must stay single tokens (tool and reasoning parsers match on them).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>", "<think>", "</think>"]
EOS_TOKENS = ["<|im_end|>", "<|endoftext|>"]

_WORDS = ("the weather in paris is sunny today what time is it please call a function with arguments "
          "city unit celsius fahrenheit location query result value true false null number string "
          "system user assistant tool function parameter name description type object properties "
          "required hello world answer in one sentence two plus two equals four").split()


def _corpus() -> list[str]:
    lines = [" ".join(_WORDS[i:i + 9]) for i in range(len(_WORDS))]
    lines += [f"<function={a}>\n<parameter={b}>\n{c}\n</parameter>\n</function>"
              for a, b, c in itertools.islice(itertools.product(_WORDS[:12], _WORDS[12:24], _WORDS[24:36]), 300)]
    lines += [json.dumps({"name": a, "arguments": {b: c}}) for a, b, c in zip(_WORDS, _WORDS[5:], _WORDS[9:])]
    lines += ["0123456789 {}[]():;,.\"'\n\t"] * 20
    return lines


def build_tokenizer(vocab_size: int):
    """A transformers fast tokenizer of exactly `vocab_size` ids (special tokens last)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_corpus(), trainer)
    bpe.add_special_tokens(SPECIAL_TOKENS)
    if bpe.get_vocab_size() > vocab_size:
        raise ValueError(f"tokenizer needs {bpe.get_vocab_size()} ids, the model has {vocab_size}")
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
