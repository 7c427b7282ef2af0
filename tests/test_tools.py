"""@tool schemas, validation, and every failure reaching the model as a result."""

import threading
from typing import List, Literal, Optional

import pytest

from mcr.tools import Tool, ToolContext, ToolError, ToolRegistry, ToolResult, ToolRetry, builtin_tools, tool
from mcr.types import TimeSpan, ToolCall


@tool
def find_objects(
    ctx: ToolContext,
    query: str,
    span: TimeSpan,
    k: int = 5,
    threshold: Optional[float] = None,
    mode: Literal["fast", "accurate"] = "fast",
    labels: List[str] = [],  # noqa: B006 (arguments are validated and copied before the call)
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
    assert props["span"] == {
        "type": "string",
        "description": 'Where to look, written start-end, e.g. "00:01:02-00:01:10"',
    }
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
        """Args:
        text: What to shout."""
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
        """Always fails.

        Args:
            x: The sensor.
        """
        raise RuntimeError(f"sensor {x} unplugged")

    @tool
    def picky(level: int) -> str:
        """Wants a level of 3.

        Args:
            level: The level.
        """
        if level != 3:
            raise ToolRetry("level must be 3 for this video")
        return "ok"

    @tool(timeout=0.5, cancellable=True)
    def slow(ctx: ToolContext, wake: bool) -> str:
        """Answers at once when woken, else waits until the call is cancelled.

        Args:
            wake: Answer at once.
        """
        if wake:
            return "awake"
        ctx.cancelled.wait(60)
        raise ToolError("stopped")

    @tool
    def rich_result(ctx: ToolContext) -> ToolResult:
        """Returns spans and metadata."""
        return ToolResult("two spans", spans=[TimeSpan(1, 2), TimeSpan(3, 4)], metadata={"n": 2})

    @tool
    def plain_dict(n: int) -> dict:
        """Returns a dict.

        Args:
            n: How many items.
        """
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
    r = run(registry, "slow", wake=False)
    assert r.is_error and r.text.startswith("error: tool 'slow' timed out after 0.5 s and was stopped;")
    assert r.metadata["timed_out"] and r.metadata["stopped"]
    assert run(registry, "slow", wake=True).text == "awake"


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
    """Another tool named boom.

    Args:
        x: A number.
    """
    return x


def test_builtin_inspect_frames_schema():
    inspect_frames = builtin_tools(perception=False)[0]
    assert inspect_frames.name == "inspect_frames"
    props = inspect_frames.schema()["function"]["parameters"]["properties"]
    assert set(props) == {"span", "fps", "max_frames", "max_pixels"}


def test_inspect_frames_without_video_is_a_result():
    r = ToolRegistry(builtin_tools()).execute(ToolCall("inspect_frames", {"span": "0-1"}, "c"), ToolContext())
    assert r.is_error and r.text == "error: no video is open in this run"


# ------------------------------------------------------------- timeouts and cancelling


def test_a_cancellable_tool_that_times_out_is_stopped():
    started, threads = threading.Event(), []

    @tool(timeout=0.05, cancellable=True)
    def crawl(ctx: ToolContext) -> str:
        """Works in chunks until cancelled."""
        threads.append(threading.current_thread())
        started.set()
        while not ctx.cancelled.wait(0.01):  # one chunk of work, then look at the event
            pass
        raise ToolError("stopped")

    caller = ToolContext()
    registry = ToolRegistry([crawl], cancel_grace_s=60)  # it ends as soon as it sees the event
    r = registry.execute(ToolCall("crawl", {}, "c"), caller)
    assert started.is_set()
    assert r.is_error and r.text == (
        "error: tool 'crawl' timed out after 0.05 s and was stopped; try a narrower span or a cheaper call."
    )
    assert r.metadata["stopped"] is True
    assert not threads[0].is_alive()  # its thread has ended
    assert not caller.cancelled.is_set()  # each call has its own event: the caller's context is untouched


def test_a_tool_that_cannot_be_cancelled_is_reported_abandoned():
    release, threads = threading.Event(), []

    @tool(timeout=0.05)
    def stubborn() -> str:
        """Blocks until released, whatever happens."""
        threads.append(threading.current_thread())
        release.wait(60)
        return "late"

    r = ToolRegistry([stubborn]).execute(ToolCall("stubborn", {}, "c"), ToolContext())
    try:
        assert r.is_error and "timed out after 0.05 s and was abandoned" in r.text
        assert "cannot be stopped, so it may still be running" in r.text and r.metadata["stopped"] is False
        assert threads[0].is_alive()  # still on its thread: abandoned, as the result says
    finally:
        release.set()
        threads[0].join(60)
    assert not threads[0].is_alive()


def test_a_cancellable_tool_that_does_not_stop_is_reported_abandoned():
    release, threads = threading.Event(), []

    @tool(timeout=0.05, cancellable=True)
    def deaf(ctx: ToolContext) -> str:
        """Says it can be cancelled but never looks at the event."""
        threads.append(threading.current_thread())
        release.wait(60)
        return "late"

    r = ToolRegistry([deaf], cancel_grace_s=0.01).execute(ToolCall("deaf", {}, "c"), ToolContext())
    try:
        assert r.is_error and "and was abandoned (asked to stop, it was still running 0.01 s later)" in r.text
        assert r.metadata["stopped"] is False and threads[0].is_alive()
    finally:
        release.set()
        threads[0].join(60)


def test_listing_says_which_tools_can_be_cancelled_and_schemas_do_not():
    registry = ToolRegistry(builtin_tools(perception=False))
    rows = {row["name"]: row for row in registry.listing()}
    assert rows["inspect_frames"]["cancellable"] is True and rows["inspect_frames"]["timeout"] is None
    assert rows["inspect_frames"]["parameters"] == registry.get("inspect_frames").parameters
    assert "cancel" not in str(registry.schemas())  # the model's schemas say nothing of cancelling


def test_inspect_frames_stops_once_cancelled(code_video):
    from mcr.media.video import Video

    ctx = ToolContext(video=Video(code_video))
    ctx.cancelled.set()
    r = ToolRegistry(builtin_tools(perception=False)).execute(ToolCall("inspect_frames", {"span": "0-4"}, "c"), ctx)
    assert r.is_error and r.text == "error: the call was cancelled"
    ctx.cancelled.clear()
    r = ToolRegistry(builtin_tools(perception=False)).execute(ToolCall("inspect_frames", {"span": "0-4"}, "c"), ctx)
    assert not r.is_error and len(r.frames) == 4


def test_stream_frames_stops_at_the_next_frame_once_cancelled(code_video):
    from mcr.media.video import Video
    from mcr.tools.sampling import stream_frames

    cancelled = threading.Event()
    frames = stream_frames(Video(code_video), [0.0, 1.0, 2.0, 3.0], cancelled=cancelled)
    assert next(frames)[0] == 0.0
    cancelled.set()
    with pytest.raises(ToolError, match="cancelled"):
        next(frames)
    assert [t for t, _ in stream_frames(Video(code_video), [0.0, 1.0, 2.0, 3.0], cancelled=threading.Event())] == [
        0.0,
        1.0,
        2.0,
        3.0,
    ]
