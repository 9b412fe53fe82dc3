"""`vllm-sm7x serve-demo` starts vLLM's OpenAI server in emulation and real clients get answers:
/v1/models, chat completions (streamed and not), completions and /metrics, through the `openai`
Python client."""
import urllib.request

import pytest

pytestmark = pytest.mark.gpu
PORT = 18731


@pytest.fixture(scope="module", params=["sm75", "sm70"])
def server(request, tmp_path_factory):
    pytest.importorskip("vllm")
    pytest.importorskip("openai")
    from tests.gpu.server import demo_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    with demo_server(request.param, PORT, tmp_path_factory.mktemp("cache"), log, ["--max-num-seqs", "4"]):
        yield request.param, log


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=f"http://localhost:{PORT}/v1", api_key="unused")


def test_models_lists_the_demo(client):
    assert [m.id for m in client.models.list().data] == ["qwen3-tiny-awq"]


def test_chat_completion_plain_and_streamed(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.create(model="qwen3-tiny-awq", messages=messages, max_tokens=12,
                                           temperature=0)
    assert reply.choices[0].finish_reason in ("length", "stop") and reply.usage.completion_tokens >= 1
    chunks = list(client.chat.completions.create(model="qwen3-tiny-awq", messages=messages, max_tokens=12,
                                                 temperature=0, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_completion(client):
    reply = client.completions.create(model="qwen3-tiny-awq", prompt="the weather in", max_tokens=8,
                                      temperature=0)
    assert reply.usage.completion_tokens >= 1


def test_metrics_and_the_activation_line(server, client):
    emulate, log = server
    client.completions.create(model="qwen3-tiny-awq", prompt="hello", max_tokens=2)
    metrics = urllib.request.urlopen(f"http://localhost:{PORT}/metrics", timeout=10).read().decode()
    assert "vllm:generation_tokens_total" in metrics
    # The platform's activation line, once (the demo's own banner says "emulating" too).
    assert log.read_text().count(f"vllm-sm7x platform active: emulating {emulate.upper()} on") == 1
