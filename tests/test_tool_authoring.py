"""Writing a tool: async tools, toolsets, names that cannot clash, full pydantic arguments,
typed returns, declared evidence, feedback at decoration, and the work folder."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pytest
from procs import worker
from pydantic import BaseModel, Field

from mcr.errors import ToolNameError
from mcr.tools import (
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolDefinitionWarning,
    ToolRegistry,
    Toolset,
    builtin_tools,
    tool,
    tools_of,
)
from mcr.types import TimeSpan, ToolCall

ROOT = Path(__file__).resolve().parents[1]


def call(registry: ToolRegistry, name: str, ctx: ToolContext | None = None, **arguments):
    return registry.execute(ToolCall(name, arguments, "c"), ctx or ToolContext())


# ------------------------------------------------------------------ async tools and toolsets


@tool
async def slow_add(a: int, b: int) -> int:
    """Add two numbers after a pause.

    Args:
        a: The first number.
        b: The second number.
    """
    await asyncio.sleep(0.01)
    return a + b


def test_an_async_tool_is_awaited():
    r = call(ToolRegistry([slow_add]), "slow_add", a=2, b=3)
    assert not r.is_error and r.text == "5"
    assert slow_add.invoke(ToolContext(), {"a": 1, "b": 1}).text == "2"


def test_an_async_tool_is_awaited_from_code_already_on_an_event_loop():
    async def main():
        direct = await slow_add.ainvoke(ToolContext(), {"a": 4, "b": 5})
        through = ToolRegistry([slow_add]).execute(ToolCall("slow_add", {"a": 1, "b": 2}, "c"), ToolContext())
        return direct.text, through.text

    assert asyncio.run(main()) == ("9", "3")


def test_an_async_tool_that_times_out_has_its_task_cancelled():
    events: list[str] = []

    @tool(timeout=0.05)
    async def nap(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: How long.
        """
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return "rested"

    registry = ToolRegistry([nap], cancel_grace_s=5)
    r = call(registry, "nap", seconds=30)
    assert r.is_error and "timed out after 0.05 s and was stopped" in r.text and r.metadata["stopped"] is True
    assert events == ["cancelled"]
    assert call(registry, "nap", seconds=0).text == "rested"
    assert registry.listing()[0]["cancellable"] is True


class Notebook(Toolset):
    """Two tools sharing what was written."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @tool
    def write(self, ctx: ToolContext, line: str) -> str:
        """Write a line in the notebook.

        Args:
            line: The line to write.
        """
        self.lines.append(f"{ctx.run_id}:{line}")
        return f"{len(self.lines)} lines"

    @tool(name="read_notebook")
    async def read(self) -> list[str]:
        """Read every line written so far."""
        return list(self.lines)


def test_a_toolset_binds_its_methods_to_the_instance():
    book, other = Notebook(), Notebook()
    assert [t.name for t in book.tools()] == ["write", "read_notebook"]
    assert [t.name for t in tools_of(other)] == ["write", "read_notebook"]
    assert "self" not in json.dumps(book.write.parameters) and list(book.write.parameters["properties"]) == ["line"]
    assert book.write is book.write  # bound once, kept on the instance
    registry = ToolRegistry(book.tools())
    assert call(registry, "write", ToolContext(run_id="r"), line="hello").text == "1 lines"
    assert json.loads(call(registry, "read_notebook").text) == ["r:hello"]
    assert other.lines == []  # state belongs to each instance
    assert book.write(ToolContext(run_id="d"), "direct") == "2 lines"  # still a plain method


def test_a_method_tool_read_from_the_class_is_refused_with_one_line():
    with pytest.raises(ToolNameError, match="is a method: add the tools of an instance"):
        ToolRegistry([Notebook.write])
    with pytest.raises(ToolDefinitionError, match="tools_of"):
        Notebook.write.invoke(ToolContext(), {"line": "x"})


# ------------------------------------------------------------------ names that cannot clash


@pytest.mark.parametrize("name", ["answer", "final_answer", "investigate"])
def test_the_loops_own_tool_names_are_reserved(name):
    with pytest.raises(ToolDefinitionError, match=f"{name!r} is reserved .*pick another name"):

        @tool(name=name)
        def mine(x: str) -> str:
            """Mine.

            Args:
                x: Text.
            """
            return x

    with pytest.raises(ValueError, match="reserved"):
        Tool(lambda x: x, name=name)


def _asr_like(name: str, replaces: str | None = None) -> Tool:
    def transcribe(span: str) -> str:
        """Transcribe a span my way.

        Args:
            span: The span.
        """
        return "words"

    return tool(transcribe, name=name, replaces=replaces)


def test_user_tools_meet_built_ins_only_by_saying_so():
    builtins = builtin_tools(memory=True, perception=False)
    registry = ToolRegistry(builtins)
    with pytest.raises(ToolNameError, match="'inspect_frames' has the name of a built-in tool.*replaces="):
        registry.add_user_tools([_asr_like("inspect_frames")])
    mine = _asr_like("inspect_frames", replaces="inspect_frames")
    registry.add_user_tools([mine])
    assert registry.get("inspect_frames") is mine and len(registry) == len(builtins)

    registry = ToolRegistry(builtins)
    registry.add_user_tools([_asr_like("memory_search")], replace_builtins=True)
    assert registry.get("memory_search").description == "Transcribe a span my way."

    registry = ToolRegistry(builtins)
    renamed = _asr_like("my_frames", replaces="inspect_frames")
    registry.add_user_tools([renamed])
    assert "inspect_frames" not in registry and registry.get("my_frames") is renamed
    registry.add_user_tools([_asr_like("my_asr", replaces="asr")])  # a built-in left out on this machine
    with pytest.raises(ToolNameError, match="replaces 'asrr', which is not a built-in tool"):
        registry.add_user_tools([_asr_like("x", replaces="asrr")])


def test_two_user_tools_of_one_name_are_always_an_error():
    with pytest.raises(ToolNameError, match="two of the tools given are named 'same'"):
        ToolRegistry().add_user_tools([_asr_like("same"), _asr_like("same")], replace_builtins=True)
    with pytest.raises(ValueError, match="two tools are named 'same'"):
        ToolRegistry([_asr_like("same"), _asr_like("same")])


def test_a_toolset_instance_is_added_as_its_tools():
    registry = ToolRegistry(builtin_tools(perception=False))
    registry.add_user_tools([Notebook(), slow_add])
    assert registry.names == ["inspect_frames", "write", "read_notebook", "slow_add"]


# ------------------------------------------------------------------ full pydantic arguments


FIRST_SPAN = TimeSpan(1, 2)


class Node(BaseModel):
    label: str
    children: list["Node"] = []


@tool
def settings(
    query: str,
    ctx: ToolContext,
    thresh: float = Field(0.5, ge=0, le=1),
    weight: Annotated[float, Field(ge=0, le=1, description="How much it counts.", examples=[0.25])] = 1.0,
    bias: Annotated[float, Field(ge=-1, le=1)] = 0.0,
    model_config: str = "plain",
    schema: int = 1,
    validate: bool = False,
    copy: str = "",
    json: str = "",
    dict: str = "",
    _hidden: int = 0,
    span: TimeSpan = FIRST_SPAN,
    where: Optional[TimeSpan] = None,
) -> str:
    """Echo the settings.

    Args:
        query: What to look for.
        thresh: The least score kept.
        weight: Not used: the Field says it.
        bias: Added to every score.
        model_config: A name pydantic keeps for itself.
        schema: Shadows BaseModel.schema.
        validate: Shadows BaseModel.validate.
        copy: Shadows BaseModel.copy.
        json: Shadows BaseModel.json.
        dict: Shadows BaseModel.dict.
        _hidden: Starts with an underscore.
        span: Where to look.
        where: Another span, or none.
    """
    values = (query, ctx.run_id, thresh, weight, bias, model_config, schema, validate, copy, json, dict, _hidden)
    return repr(values + (span, where))


def test_field_bounds_are_enforced_and_defaults_filled():
    registry = ToolRegistry([settings])
    r = call(registry, "settings", ToolContext(run_id="r"), query="q")
    assert r.text == repr(
        ("q", "r", 0.5, 1.0, 0.0, "plain", 1, False, "", "", "", 0, TimeSpan(1, 2), None)
    )  # the Field's default, not the FieldInfo object
    r = call(registry, "settings", query="q", thresh=5, bias=2)
    assert r.is_error and "- thresh: Input should be less than or equal to 1" in r.text and "- bias:" in r.text


def test_field_descriptions_bounds_and_examples_reach_the_schema():
    props = settings.parameters["properties"]
    assert props["thresh"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0.5,
        "description": ("The least score kept."),
    }
    assert props["weight"]["description"] == "How much it counts." and props["weight"]["examples"] == [0.25]
    assert props["weight"]["maximum"] == 1 and props["bias"]["minimum"] == -1
    assert props["bias"]["description"] == "Added to every score."  # the docstring, where Field has none


def test_parameter_names_pydantic_keeps_for_itself_still_work():
    names = ["model_config", "schema", "validate", "copy", "json", "dict", "_hidden"]
    props = settings.parameters["properties"]
    assert all(n in props for n in names) and "ctx" not in props
    assert props["model_config"]["description"] == "A name pydantic keeps for itself."
    args = dict(query="q", model_config="m", schema=2, validate=True, copy="c", json="j", dict="d", _hidden=3)
    r = call(ToolRegistry([settings]), "settings", **args)
    assert r.text == repr(("q", "", 0.5, 1.0, 0.0, "m", 2, True, "c", "j", "d", 3, TimeSpan(1, 2), None))
    r = call(ToolRegistry([settings]), "settings", query="q", field_5="x")
    assert r.is_error and "- field_5: unexpected argument" in r.text


def test_spans_are_described_as_the_model_writes_them():
    props = settings.parameters["properties"]
    assert props["span"] == {
        "type": "string",
        "default": "00:00:01.0-00:00:02.0",
        "description": 'Where to look, written start-end, e.g. "00:01:02-00:01:10"',
    }
    assert 'e.g. "00:01:02-00:01:10"' in props["where"]["description"] and props["where"]["default"] is None
    r = call(ToolRegistry([settings]), "settings", query="q", span=props["span"]["default"], where="00:00:03-4")
    assert r.text.endswith("TimeSpan(start=1.0, end=2.0), TimeSpan(start=3.0, end=4.0))")


def test_a_recursive_model_argument_keeps_its_definition():
    @tool
    def tree_size(tree: Node) -> int:
        """Count the nodes of a tree.

        Args:
            tree: The tree.
        """

        def size(n: Node) -> int:
            return 1 + sum(size(c) for c in n.children)

        return size(tree)

    schema = tree_size.parameters
    assert schema["properties"]["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    tree = {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}, {"label": "d"}]}
    assert call(ToolRegistry([tree_size]), "tree_size", tree=tree).text == "4"


def test_the_context_is_found_by_its_type_anywhere():
    @tool
    def late(a: int, b: int, context: ToolContext, /) -> str:
        """Context last, positional only.

        Args:
            a: One.
            b: Two.
        """
        return f"{a + b}:{context.run_id}"

    assert list(late.parameters["properties"]) == ["a", "b"]
    assert call(ToolRegistry([late]), "late", ToolContext(run_id="x"), a=1, b=2).text == "3:x"


# ------------------------------------------------------------------ typed returns


class Sighting(BaseModel):
    label: str
    score: float
    span: TimeSpan


@dataclasses.dataclass
class Count:
    n: int
    where: list[TimeSpan]


def test_a_returned_model_or_dataclass_is_json_for_the_model_and_typed_in_metadata():
    @tool
    def spot() -> Sighting:
        """Spot a boat."""
        return Sighting(label="boat", score=0.9, span=TimeSpan(2, 4))

    @tool
    def count() -> Count:
        """Count boats."""
        return Count(2, [TimeSpan(1, 2), TimeSpan(5, 6)])

    registry = ToolRegistry([spot, count])
    r = call(registry, "spot")
    assert json.loads(r.text) == {"label": "boat", "score": 0.9, "span": "00:00:02.0-00:00:04.0"}
    assert isinstance(r.metadata["value"], Sighting) and r.spans == [TimeSpan(2, 4)]
    r = call(registry, "count")
    assert json.loads(r.text) == {"n": 2, "where": ["00:00:01.0-00:00:02.0", "00:00:05.0-00:00:06.0"]}
    assert r.metadata["value"] == Count(2, [TimeSpan(1, 2), TimeSpan(5, 6)]) and len(r.spans) == 2


def test_numpy_values_and_returned_spans():
    @tool
    def stats() -> dict:
        """Numbers from numpy."""
        return {"mean": np.float32(0.5), "counts": np.arange(3), "at": {"first": TimeSpan(7, 8)}}

    @tool
    def where() -> list[TimeSpan]:
        """Spans."""
        return [TimeSpan(0, 1), TimeSpan(3, 4)]

    registry = ToolRegistry([stats, where])
    r = call(registry, "stats")
    assert json.loads(r.text) == {"mean": 0.5, "counts": [0, 1, 2], "at": {"first": "00:00:07.0-00:00:08.0"}}
    assert r.spans == [TimeSpan(7, 8)]
    assert call(registry, "where").spans == [TimeSpan(0, 1), TimeSpan(3, 4)]


# ------------------------------------------------------------------ declared evidence


def test_reads_is_stored_validated_and_marks_results_that_had_the_video(code_video):
    from mcr.media.video import Video

    @tool(reads="frames")
    def bright(ctx: ToolContext) -> list[TimeSpan]:
        """The bright spans."""
        ctx.require_video()
        return [TimeSpan(1, 2)]

    assert bright.reads == "frames" and ToolRegistry([bright]).listing()[0]["reads"] == "frames"
    r = call(ToolRegistry([bright]), "bright", ToolContext(video=Video(code_video)))
    assert r.metadata["reads"] == "frames" and r.spans == [TimeSpan(1, 2)]
    assert "reads" not in call(ToolRegistry([bright]), "bright").metadata  # no video: nothing was read
    with pytest.raises(ToolDefinitionError, match="reads='pixels' must be one of frames, speech, text or None"):
        tool(reads="pixels", name="x")(lambda: 1)


# ------------------------------------------------------------------ feedback at decoration


def test_missing_and_stray_descriptions_warn_at_decoration_and_fail_when_strict():
    def sloppy(a: int, b: int) -> int:
        """Add.

        Args:
            a: First.
            c: Not a parameter.
        """
        return a + b

    def bare(a: int) -> int:
        return a

    with pytest.warns(ToolDefinitionWarning) as caught:
        tool(sloppy)
        tool(bare)
    messages = [str(w.message) for w in caught]
    assert messages == [
        "tool 'sloppy': parameter 'b' is not described (add it under Args: in the docstring)",
        "tool 'sloppy': the docstring describes 'c', which is not a parameter",
        "tool 'bare' has no docstring: the model sees only its name",
        "tool 'bare': parameter 'a' is not described (add it under Args: in the docstring)",
    ]
    assert caught[0].filename == __file__  # it points at the function
    with pytest.raises(ToolDefinitionError, match="parameter 'b' is not described"):
        tool(sloppy, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToolDefinitionWarning)
        tool(settings.fn, name="settings2", strict=True)  # a tool that says everything passes


def test_the_built_in_tools_raise_no_definition_warning():
    proc = subprocess.run(worker("tools_import_clean"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr[-2000:]


# ------------------------------------------------------------------ the work folder


def test_the_work_folder_is_made_on_first_use(tmp_path):
    where = tmp_path / "runs" / "r1"
    ctx = ToolContext(work_dir=str(where))
    assert not where.exists()
    seen: list[Path] = []
    threads = [threading.Thread(target=lambda: seen.append(ctx.work_dir)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert where.is_dir() and seen == [where] * 8
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="cannot make the work folder"):
        _ = ToolContext(work_dir=tmp_path / "file" / "sub").work_dir


# ------------------------------------------------------------------ the examples


@pytest.mark.parametrize(
    "script, expected",
    [
        ("custom_tool.py", "answer: The water looks dark blue-grey."),
        ("async_toolset.py", "measured: 00:00:00.0-00:00:06.0 16.6; 00:00:06.0-00:00:12.5 14.8"),
        ("evidence_tool.py", "answer: 00:00:08.2-00:00:09.2"),
    ],
)
@pytest.mark.slow
def test_each_example_runs_as_a_script(tmp_path, boats, script, expected):
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), str(boats)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expected in proc.stdout and "status: verified" in proc.stdout, proc.stdout
    assert time.monotonic() - started < 180


def test_an_argument_type_without_a_json_form_is_one_line():
    with pytest.raises(ToolDefinitionError, match="tool 'takes_array': an argument cannot be described to a model"):

        @tool
        def takes_array(a: np.ndarray) -> int:
            """Take an array.

            Args:
                a: The array.
            """
            return len(a)
