"""Anthropic /v1/messages requests with `role: "system"` inside `messages` (Claude Code sends them)
reach a Qwen-style template, which only accepts one leading system message, as one merged system
turn. Stock vLLM 0.26.0 handles this (guard)."""
from vllm.entrypoints.anthropic.protocol import AnthropicMessagesRequest
from vllm.entrypoints.anthropic.serving import AnthropicServingMessages

SYSTEM_FIRST_ONLY = ("{% for m in messages %}{% if m.role == 'system' and not loop.first %}"
                     "{{ raise_exception('System message must be at the beginning.') }}{% endif %}"
                     "{{ m.role }}: {{ m.content }}\n{% endfor %}")


def test_inline_system_messages_are_accepted_and_merged_first():
    request = AnthropicMessagesRequest(model="m", max_tokens=16, system="You are terse.", messages=[
        {"role": "user", "content": "hi"}, {"role": "system", "content": " Answer in English."},
        {"role": "user", "content": "2+2?"}])
    assert AnthropicServingMessages._detect_merge_inline_system(SYSTEM_FIRST_ONLY) is True
    openai = AnthropicServingMessages._convert_anthropic_to_openai_request(request, merge_inline_system=True)
    roles = [m["role"] if isinstance(m, dict) else m.role for m in openai.messages]
    assert roles == ["system", "user", "user"]
    first = openai.messages[0]
    assert (first["content"] if isinstance(first, dict) else first.content) == "You are terse. Answer in English."
