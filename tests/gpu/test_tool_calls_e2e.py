"""Tool calls and reasoning end to end, through the OpenAI and Anthropic endpoints of a server in
SM75 emulation (issue 8): the tiny model is scripted (tests/gpu/scripted_output.py) to emit what
Qwen3.5/3.6 emit, so vLLM's qwen3_coder tool parser and qwen3 reasoning parser, streaming and finish
reasons are checked with real clients."""
import json
import urllib.request

import pytest

pytestmark = pytest.mark.gpu
PORT = 18732
MODEL = "qwen3-tiny-awq"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
        "<|im_end|>")
THINKING_CALL = "The user wants the weather.\n</think>\n\n" + CALL
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
NO_THINKING = {"enable_thinking": False}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    pytest.importorskip("vllm")
    pytest.importorskip("openai")
    from transformers import AutoTokenizer

    from vllm_sm7x.entrypoints.demo import ensure_checkpoint

    cache = tmp_path_factory.mktemp("cache")
    return cache, AutoTokenizer.from_pretrained(str(ensure_checkpoint(cache)))


def script(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def server(tokenizer, tmp_path_factory):
    from tests.gpu.server import demo_server

    cache, tok = tokenizer
    log = tmp_path_factory.mktemp("server") / "server.log"
    args = ["--logits-processors", "scripted_output:ScriptedOutput", "--max-num-seqs", "4"]
    with demo_server("sm75", PORT, cache, log, args, {"SCRIPTED_OUTPUT": json.dumps(script(tok, CALL))}):
        yield log


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=f"http://localhost:{PORT}/v1", api_key="unused")


def test_openai_tool_call(client):
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER], max_tokens=128,
                                           temperature=0, extra_body={"chat_template_kwargs": NO_THINKING})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert not choice.message.content


def test_openai_tool_call_streamed(client):
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER], max_tokens=128,
                                            temperature=0, stream=True,
                                            extra_body={"chat_template_kwargs": NO_THINKING})
    names, arguments, finish = [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for call in delta.tool_calls or []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                arguments += call.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"] and json.loads(arguments) == {"city": "Paris"} and finish == "tool_calls"


def test_openai_reasoning_then_tool_call(client, tokenizer):
    _, tok = tokenizer
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER], max_tokens=128,
                                           temperature=0,
                                           extra_body={"vllm_xargs": {"scripted_output": script(tok, THINKING_CALL)}})
    message = reply.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    assert reasoning.strip() == "The user wants the weather."
    assert [c.function.name for c in message.tool_calls] == ["get_weather"]


def test_anthropic_messages_tool_use(server):
    body = {"model": MODEL, "max_tokens": 128, "messages": MESSAGES, "chat_template_kwargs": NO_THINKING,
            "tools": [{"name": "get_weather", "description": "Weather of a city",
                       "input_schema": WEATHER["function"]["parameters"]}]}
    request = urllib.request.Request(f"http://localhost:{PORT}/v1/messages", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "x-api-key": "unused",
                                              "anthropic-version": "2023-06-01"})
    reply = json.loads(urllib.request.urlopen(request, timeout=120).read())
    assert reply["stop_reason"] == "tool_use"
    (tool_use,) = [block for block in reply["content"] if block["type"] == "tool_use"]
    assert tool_use["name"] == "get_weather" and tool_use["input"] == {"city": "Paris"}
