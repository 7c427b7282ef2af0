"""Property-based tests of the parsers that read outside text: spans and times as a model or a
user writes them, model replies with tool calls, answers, replay scripts. Whatever comes in,
each either reads it or says what is wrong in one clear error of its own family; none raises
anything else. Bounded: a few hundred cases each, no deadline (the machine may be busy)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcr.errors import MCRError
from mcr.models.base import ModelError
from mcr.models.parse import parse_tool_calls
from mcr.models.replay import ReplayModel
from mcr.run.answers import interpret, read_answer
from mcr.types import TimeSpan, TimeSpanError, ToolCall, parse_time

BOUNDED = settings(  # the same examples every run, so CI cannot fail on a draw that the last run did not make
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
time_text = st.from_regex(r"\s*\d{0,3}(:\d{0,3}){0,3}(\.\d{0,3})?[sS]?\s*", fullmatch=True)
span_text = st.one_of(
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}", time_text, st.sampled_from(["-", " to ", "–", "—", " - ", ","]), time_text
    ),
    st.text(max_size=40),
)


@BOUNDED
@given(st.one_of(time_text, st.text(max_size=30), json_values))
@example("1e400")
@example("nan")
@example(float("inf"))
@example(True)
def test_a_time_is_seconds_or_one_clear_error(value):
    try:
        seconds = parse_time(value)
    except TimeSpanError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert math.isfinite(seconds) and seconds >= 0


@BOUNDED
@given(st.one_of(span_text, json_values))
@example("[5, 2]")
@example('{"start": "1:00", "end": "nan"}')
@example({"START": 1, "End": 2})
def test_a_span_is_read_or_one_clear_error(value):
    try:
        span = TimeSpan.parse(value)
    except TimeSpanError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert 0 <= span.start <= span.end and math.isfinite(span.end)
    again = TimeSpan.parse(str(span))  # printed to a tenth of a second, and as exactly as a float holds
    assert abs(again.end - span.end) <= max(0.06, 1e-12 * span.end)


@BOUNDED
@given(st.text(max_size=300))
@example('<tool_call>{"name": "asr", "arguments": {"span": "0-4"}}</tool_call>')
@example("<tool_call>{'name': 'x', 'parameters': [1]}</tool_call>")
@example('```json\n{"name": 5, "arguments": "x"}\n```')
@example("<think>a</think><tool_call>{")
def test_a_model_reply_always_parses_into_text_and_well_formed_calls(text):
    parsed = parse_tool_calls(text)
    assert isinstance(parsed.text, str) and isinstance(parsed.reasoning, str)
    for call in parsed.tool_calls:
        assert isinstance(call.name, str) and call.name
        assert isinstance(call.arguments, dict)


@BOUNDED
@given(st.dictionaries(st.sampled_from(["answer", "evidence", "text", "spans", "x"]), json_values, max_size=3))
def test_an_answer_call_is_read_or_its_problem_said(arguments):
    text, evidence, problem = read_answer(ToolCall("answer", arguments), duration=60.0)
    assert isinstance(text, str) and isinstance(problem, str)
    assert all(isinstance(s, TimeSpan) and s.end <= 60.0 for s in evidence)


@BOUNDED
@given(
    st.sampled_from(["text", "choice", "span", "count"]),
    st.text(max_size=60),
    st.lists(st.text(max_size=10), max_size=5),
    st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_an_answer_text_is_typed_or_its_problem_said(form, text, options, duration):
    typed, problem = interpret(form, text, options, duration)
    assert isinstance(problem, str)
    if not problem and form == "span":
        assert isinstance(typed.value, TimeSpan)
    if not problem and form == "choice":
        assert 0 <= typed.value < len(options)


@BOUNDED
@given(st.one_of(json_values, st.lists(json_values, min_size=1, max_size=4)))
@example([{"tool": 5, "arguments": "x"}])
@example([{"tool": "asr", "arguments": [1, 2]}])
@example([{"text": 5}])
@example({"steps": [{"tool_calls": [{"name": None}]}]})
def test_a_replay_script_loads_or_one_clear_error(tmp_path, data):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        model = ReplayModel.from_file(path)
    except ModelError as exc:
        assert isinstance(exc, MCRError) and "\n" not in str(exc)
        return
    for out in model.outputs:
        assert all(isinstance(c.name, str) and isinstance(c.arguments, dict) for c in out.tool_calls)


@BOUNDED
@given(st.lists(st.one_of(json_values, st.text(max_size=30)), min_size=1, max_size=5))
@example([{"event": "model_called", "output": [1]}])
@example([{"event": "model_called", "output": {"tool_calls": [5]}}])
@example([{"event": "model_called", "output": {"usage": "x"}}])
def test_a_recorded_trace_replays_or_one_clear_error(tmp_path, lines):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines), encoding="utf-8")
    try:
        ReplayModel.from_file(path)
    except ModelError as exc:
        assert "\n" not in str(exc)
