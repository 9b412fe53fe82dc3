"""What real clients see when vLLM 0.26.0 streams Qwen3.5/3.6 output through
`--tool-call-parser qwen3_coder --reasoning-parser qwen3`, for the failures other forks patch.
Each case runs in several chunkings (single tokens, MTP-like bursts, one delta)."""
import pytest

from tests.ut.api.streaming import chunkings

THINKING_PROMPT = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n"
NO_THINK_PROMPT = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CALL = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n"
        "</parameter>\n</function>\n</tool_call>")
ALL_CHUNKINGS = list(chunkings(1))


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_tool_call_after_reasoning_has_exact_name_and_typed_arguments(stream, chunking):
    output = "The user wants the weather.\n</think>\n\n" + CALL
    result = stream(THINKING_PROMPT, output, chunking)
    assert result.reasoning.strip() == "The user wants the weather."
    assert result.tool_calls() == [("get_weather", {"city": "Paris", "days": 3})]
    assert result.content.strip() == ""


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_angle_bracket_that_is_not_a_tool_marker_stays_in_content(stream, chunking):
    output = "Use a < b and x<y, or <b>bold</b> text.\nDone."
    result = stream(NO_THINK_PROMPT, output, chunking)
    assert result.content == output
    assert result.calls == {}


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_text_before_a_tool_call_is_kept(stream, chunking):
    output = "Let me check <that> for you.\n\n" + CALL
    result = stream(NO_THINK_PROMPT, output, chunking)
    assert result.content.strip() == "Let me check <that> for you."
    assert result.tool_calls() == [("get_weather", {"city": "Paris", "days": 3})]


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_string_arguments_are_not_json_encoded_twice(stream, chunking):
    output = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nSan \"Fran\" cisco\n</parameter>\n"
              "<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>")
    result = stream(NO_THINK_PROMPT, output, chunking)
    assert result.tool_calls() == [("get_weather", {"city": 'San "Fran" cisco', "unit": "celsius"})]


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_two_calls_keep_their_own_arguments(stream, chunking):
    second = CALL.replace("Paris", "Oslo").replace("\n3\n", "\n1\n")
    result = stream(NO_THINK_PROMPT, CALL + "\n" + second, chunking)
    assert result.tool_calls() == [("get_weather", {"city": "Paris", "days": 3}),
                                   ("get_weather", {"city": "Oslo", "days": 1})]


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_bare_function_block_without_tool_call_tags(stream, chunking):
    output = "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>"
    result = stream(NO_THINK_PROMPT, output, chunking)
    assert result.tool_calls() == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_reasoning_split_when_the_prompt_opened_think(stream, chunking):
    output = "Two plus two is four.\n</think>\n\nIt is 4."
    result = stream(THINKING_PROMPT, output, chunking, tools=())
    assert result.reasoning.strip() == "Two plus two is four."
    assert result.content.strip() == "It is 4."


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_thinking_disabled_by_chat_template_kwargs_is_all_content(stream, chunking):
    output = "It is 4."
    result = stream(NO_THINK_PROMPT, output, chunking, tools=(), chat_template_kwargs={"enable_thinking": False})
    assert result.content == "It is 4."
    assert result.reasoning == ""


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_truncated_reasoning_does_not_leak_into_content(stream, chunking):
    output = "Let me think about the weather in Paris and what the user"  # cut by max_tokens
    result = stream(THINKING_PROMPT, output, chunking)
    assert result.content == ""
    assert result.reasoning == output


SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search documents",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "tags": {"type": "array"},
                                                    "filters": {"type": "object"}, "exact": {"type": "boolean"}},
                   "required": ["query"]}}}


@pytest.mark.parametrize("chunking", ALL_CHUNKINGS)
def test_values_with_markup_lines_and_structured_types(stream, chunking):
    output = ("<tool_call>\n<function=search>\n<parameter=query>\nif a < b and c > d:\n\n    return <x>\n</parameter>\n"
              "<parameter=tags>\n[\"py\", \"cmp\"]\n</parameter>\n<parameter=filters>\n{\"lang\": \"en\", \"max\": 5}\n"
              "</parameter>\n<parameter=exact>\ntrue\n</parameter>\n</function>\n</tool_call>")
    result = stream(NO_THINK_PROMPT, output, chunking, tools=(SEARCH,))
    assert result.tool_calls() == [("search", {"query": "if a < b and c > d:\n\n    return <x>", "tags": ["py", "cmp"],
                                               "filters": {"lang": "en", "max": 5}, "exact": True})]
