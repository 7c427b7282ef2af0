"""The tool-call parser on texts that models really produce, slips included."""

import pytest

from mcr.models import ModelOutput, parse_tool_calls, split_reasoning

CASES = [
    # 1. clean Hermes/Qwen block
    (
        '<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "00:00-00:04"}}\n</tool_call>',
        [("inspect_frames", {"span": "00:00-00:04"})],
        "",
    ),
    # 2. single quotes (Python dict style)
    (
        "<tool_call>{'name': 'asr', 'arguments': {'span': '00:10-00:20'}}</tool_call>",
        [("asr", {"span": "00:10-00:20"})],
        "",
    ),
    # 3. 'parameters' instead of 'arguments'
    ('<tool_call>{"name": "ocr", "parameters": {"span": "1-2"}}</tool_call>', [("ocr", {"span": "1-2"})], ""),
    # 4. code fence inside the tag
    ('<tool_call>\n```json\n{"name": "ocr", "arguments": {}}\n```\n</tool_call>', [("ocr", {})], ""),
    # 5. prose before and after, unclosed tag at the end
    (
        'Let me look at the start.\n<tool_call>\n{"name": "inspect_frames", "arguments": {"span": "0-4", "max_frames": 4}}',
        [("inspect_frames", {"span": "0-4", "max_frames": 4})],
        "Let me look at the start.",
    ),
    # 6. <think> block, then a call, then trailing prose
    (
        '<think>The answer needs frames near 10s.</think>\n<tool_call>{"name": "inspect_frames", "arguments": {"span": "8-12"}}</tool_call>\nI will check.',
        [("inspect_frames", {"span": "8-12"})],
        "I will check.",
    ),
    # 7. arguments as a JSON-encoded string (OpenAI style)
    ('<tool_call>{"name": "asr", "arguments": "{\\"span\\": \\"0-5\\"}"}</tool_call>', [("asr", {"span": "0-5"})], ""),
    # 8. trailing comma and true/false/null mixed with single quotes
    (
        "<tool_call>{'name': 'grounding', 'arguments': {'query': 'a dog', 'exact': true, 'k': null,},}</tool_call>",
        [("grounding", {"query": "a dog", "exact": True, "k": None})],
        "",
    ),
    # 9. bare JSON blob in a fenced block with prose, no tags
    (
        'I need the transcript.\n```json\n{"name": "asr", "arguments": {"span": "00:00-00:30"}}\n```',
        [("asr", {"span": "00:00-00:30"})],
        "I need the transcript.",
    ),
    # 10. bare JSON inline with trailing prose
    (
        '{"name": "answer", "arguments": {"answer": "B", "evidence": ["00:01-00:03"]}} That is my final answer.',
        [("answer", {"answer": "B", "evidence": ["00:01-00:03"]})],
        "That is my final answer.",
    ),
    # 11. two calls in two blocks
    (
        '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n<tool_call>{"name": "b", "arguments": {"y": 2}}</tool_call>',
        [("a", {"x": 1}), ("b", {"y": 2})],
        "",
    ),
    # 12. a list of calls in one block
    (
        '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"q": "x"}}]</tool_call>',
        [("a", {}), ("b", {"q": "x"})],
        "",
    ),
    # 13. OpenAI function wrapper inside a tag
    ('<tool_call>{"type": "function", "function": {"name": "ocr", "arguments": "{}"}}</tool_call>', [("ocr", {})], ""),
    # 14. XML function style (Qwen3-Coder)
    (
        "<tool_call>\n<function=inspect_frames>\n<parameter=span>\n00:00-00:02\n</parameter>\n<parameter=max_frames>\n2\n</parameter>\n</function>\n</tool_call>",
        [("inspect_frames", {"span": "00:00-00:02", "max_frames": 2})],
        "",
    ),
    # 15. closing </think> only (the template opened it), then a call
    ('I should look first.</think><tool_call>{"name": "ocr", "arguments": {}}</tool_call>', [("ocr", {})], ""),
    # 16. "tool" and "args" keys
    ('<tool_call>{"tool": "asr", "args": {"span": "0-1"}}</tool_call>', [("asr", {"span": "0-1"})], ""),
    # 17. tag opened twice without closing the first
    (
        '<tool_call>{"name": "a", "arguments": {}}\n<tool_call>{"name": "b", "arguments": {}}</tool_call>',
        [("a", {}), ("b", {})],
        "",
    ),
]


@pytest.mark.parametrize("text, calls, rest", CASES, ids=[f"case{i + 1}" for i in range(len(CASES))])
def test_malformed_tool_calls(text, calls, rest):
    parsed = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls
    assert parsed.text == rest


def test_reasoning_is_kept_apart():
    parsed = parse_tool_calls('<think>Frames near 10 s.</think><tool_call>{"name": "x", "arguments": {}}</tool_call>')
    assert parsed.reasoning == "Frames near 10 s."
    reasoning, rest = split_reasoning("<think>still thinking about it")
    assert reasoning == "still thinking about it" and rest == ""
    # think tags inside a call's arguments are the call's text, not reasoning
    inside = parse_tool_calls(
        '<think>look</think><tool_call>{"name": "answer", "arguments": {"answer": "a <think> tag"}}</tool_call>'
    )
    assert inside.reasoning == "look" and inside.tool_calls[0].arguments == {"answer": "a <think> tag"}
    unclosed = parse_tool_calls('<think>let me look <tool_call>{"name": "x", "arguments": {}}</tool_call>')
    assert unclosed.reasoning == "let me look" and unclosed.tool_calls[0].name == "x"


def test_plain_answer_is_not_a_call():
    parsed = parse_tool_calls("The man hands over a red book at 00:01:10.")
    assert parsed.tool_calls == [] and parsed.text.startswith("The man")


def test_json_in_an_answer_is_not_a_call():
    text = 'The label reads {"name": "Bob"} on the box.'
    assert parse_tool_calls(text).tool_calls == []
    assert parse_tool_calls(text, known={"inspect_frames"}).tool_calls == []


def test_known_tool_without_arguments_key():
    parsed = parse_tool_calls('{"name": "ocr"}', known={"ocr"})
    assert [c.name for c in parsed.tool_calls] == ["ocr"]


def test_hopeless_block_gives_no_call():
    parsed = parse_tool_calls("<tool_call>call inspect frames please</tool_call>")
    assert parsed.tool_calls == []


def test_model_output_from_text():
    out = ModelOutput.from_text('<think>hmm</think>ok <tool_call>{"name": "a", "arguments": {"k": 1}}</tool_call>')
    assert out.reasoning == "hmm" and out.text == "ok" and out.tool_calls[0].arguments == {"k": 1}
    assert ModelOutput.from_dict(out.to_dict()).tool_calls[0].name == "a"
