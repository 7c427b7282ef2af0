"""@tool schemas, validation, and every failure reaching the model as a result."""
import time
from typing import List, Literal, Optional

import pytest

from mcr.tools import Tool, ToolContext, ToolRegistry, ToolResult, ToolRetry, builtin_tools, tool
from mcr.types import TimeSpan, ToolCall


@tool
def find_objects(
    ctx: ToolContext,
    query: str,
    span: TimeSpan,
    k: int = 5,
    threshold: Optional[float] = None,
    mode: Literal["fast", "accurate"] = "fast",
    labels: List[str] = [],
) -> str:
    """Find objects matching a query in a span.

    Searches the frames of the span.

    Args:
        query: What to look for.
        span: Where to look.
        k: How many results
            to return at most.
        threshold: Minimum score, or none.
        mode: Speed against accuracy.
        labels: Extra labels to match.

    Returns:
        A list of hits.
    """
    return f"{query}|{span}|{k}|{threshold}|{mode}|{labels}|{ctx.run_id}"


def test_schema_from_hints_and_docstring():
    schema = find_objects.schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "find_objects"
    assert fn["description"] == "Find objects matching a query in a span.\n\nSearches the frames of the span."
    params = fn["parameters"]
    props = params["properties"]
    assert list(props) == ["query", "span", "k", "threshold", "mode", "labels"]  # ctx is not shown
    assert params["required"] == ["query", "span"]
    assert params["additionalProperties"] is False
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["span"]["type"] == "string" and props["span"]["description"] == "Where to look."
    assert props["k"] == {"type": "integer", "default": 5, "description": "How many results to return at most."}
    assert props["threshold"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert props["threshold"]["default"] is None
    assert props["mode"]["enum"] == ["fast", "accurate"] and props["mode"]["default"] == "fast"
    assert props["labels"]["type"] == "array" and props["labels"]["items"] == {"type": "string"}
    assert "title" not in str(schema)


def test_context_injected_and_arguments_converted():
    ctx = ToolContext(run_id="r1")
    result = find_objects.invoke(ctx, {"query": "dog", "span": "00:01-00:03", "k": "3"})
    assert result.text == "dog|00:00:01.0-00:00:03.0|3|None|fast|[]|r1"


def test_decorator_with_arguments_and_direct_call():
    @tool(name="shout", description="Upper-case text.", timeout=2, max_output_chars=5)
    def loud(text: str) -> str:
        return text.upper()

    assert isinstance(loud, Tool) and loud.name == "shout" and loud.timeout == 2
    assert loud.schema()["function"]["description"] == "Upper-case text."
    assert loud("hi") == "HI"  # still callable as the plain function
    result = ToolRegistry([loud]).execute(ToolCall("shout", {"text": "abcdefghij"}, "c1"), ToolContext())
    assert result.text.startswith("ABCDE") and "5 more characters cut" in result.text


def test_tool_needs_type_hints():
    with pytest.raises(TypeError, match="needs a type hint"):
        @tool
        def untyped(x):
            return x


def test_answer_name_is_reserved():
    with pytest.raises(ValueError, match="reserved"):
        @tool(name="answer")
        def a(x: str) -> str:
            return x


@pytest.fixture
def registry():
    @tool
    def boom(x: int) -> str:
        """Always fails."""
        raise RuntimeError(f"sensor {x} unplugged")

    @tool
    def picky(level: int) -> str:
        """Wants a level of 3."""
        if level != 3:
            raise ToolRetry("level must be 3 for this video")
        return "ok"

    @tool(timeout=0.2)
    def slow(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "awake"

    @tool
    def rich_result(ctx: ToolContext) -> ToolResult:
        """Returns spans and metadata."""
        return ToolResult("two spans", spans=[TimeSpan(1, 2), TimeSpan(3, 4)], metadata={"n": 2})

    @tool
    def plain_dict(n: int) -> dict:
        """Returns a dict."""
        return {"n": n, "items": list(range(n))}

    return ToolRegistry([boom, picky, slow, rich_result, plain_dict, find_objects])


def run(registry, name, **args):
    return registry.execute(ToolCall(name, args, "c"), ToolContext())


def test_unknown_tool_result(registry):
    r = run(registry, "fly")
    assert r.is_error and "unknown tool 'fly'" in r.text and "find_objects" in r.text


def test_invalid_arguments_result(registry):
    r = run(registry, "find_objects", query="dog", span="10-5", k="many", color="red")
    assert r.is_error
    assert "invalid arguments for 'find_objects'" in r.text
    assert "- span:" in r.text and "ends before it starts" in r.text
    assert "- k:" in r.text
    assert "- color: unexpected argument" in r.text
    r = run(registry, "find_objects", span="1-2")
    assert "- query: missing required argument" in r.text


def test_exception_result(registry):
    r = run(registry, "boom", x=7)
    assert r.is_error and r.text == "error: tool 'boom' failed: RuntimeError: sensor 7 unplugged"


def test_retry_result(registry):
    r = run(registry, "picky", level=1)
    assert r.is_error and r.text == "retry: level must be 3 for this video" and r.metadata["retry"]
    assert run(registry, "picky", level=3).text == "ok"


def test_timeout_result(registry):
    t0 = time.perf_counter()
    r = run(registry, "slow", seconds=3)
    assert r.is_error and "timed out after 0.2 s" in r.text
    assert time.perf_counter() - t0 < 2
    assert run(registry, "slow", seconds=0.01).text == "awake"


def test_results_from_plain_values(registry):
    assert run(registry, "plain_dict", n=2).text == '{"n": 2, "items": [0, 1]}'
    r = run(registry, "rich_result")
    assert r.spans == [TimeSpan(1, 2), TimeSpan(3, 4)] and r.metadata["n"] == 2 and "latency_s" in r.metadata


def test_registry_lists_schemas(registry):
    names = [s["function"]["name"] for s in registry.schemas()]
    assert names == ["boom", "picky", "slow", "rich_result", "plain_dict", "find_objects"]
    with pytest.raises(ValueError, match="two tools"):
        registry.add(Tool(_other_boom, name="boom"))


def _other_boom(x: int) -> int:
    return x


def test_builtin_inspect_frames_schema():
    inspect_frames = builtin_tools(perception=False)[0]
    assert inspect_frames.name == "inspect_frames"
    props = inspect_frames.schema()["function"]["parameters"]["properties"]
    assert set(props) == {"span", "fps", "max_frames", "max_pixels"}


def test_inspect_frames_without_video_is_a_result():
    r = ToolRegistry(builtin_tools()).execute(ToolCall("inspect_frames", {"span": "0-1"}, "c"), ToolContext())
    assert r.is_error and r.text == "error: no video is open in this run"
