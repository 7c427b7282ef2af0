"""What a developer meets when building an Agent around their own tools: names checked when the
agent is built, evidence from their own tools, the small things (single tools, BaselineAgent's
budget, exports, ``RunResult.ok``, inline subscribers, a SAM tool with no checkpoint) and an MCP
server over stdio that stops on a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcr import Agent, BaselineAgent, Policy, TimeSpan, ToolContext, ToolResult, tool
from mcr.errors import ToolNameError
from mcr.run.result import RunResult
from mcr.run.testing import ScriptedModel, answer, tool_call
from mcr.tools import Toolset

ROOT = Path(__file__).resolve().parents[1]
SPAN = "00:00:08.0-00:00:09.0"


def make_measure(text: str):
    @tool(name="measure")
    def measure_it(ctx: ToolContext) -> str:
        """Measure something."""
        return text

    return measure_it


@tool
def asr(ctx: ToolContext) -> str:
    """A transcript from somewhere else."""
    return "hello"


@tool(replaces="asr")
def my_asr(ctx: ToolContext) -> str:
    """A transcript from somewhere else, in place of the built-in one."""
    return "hello"


# ------------------------------------------------------------------ names checked when the agent is built


def test_two_tools_of_one_name_are_refused_when_the_agent_is_built():
    with pytest.raises(ToolNameError, match="two of the tools given are named 'measure'") as caught:
        Agent(model=ScriptedModel([]), tools=[make_measure("a"), make_measure("b")], memory=False)
    assert "\n" not in str(caught.value)


def test_a_tool_named_like_a_built_in_needs_to_say_so():
    with pytest.raises(ToolNameError, match=r"has the name of a built-in tool: say @tool\(replaces='asr'\)"):
        Agent(model=ScriptedModel([]), tools=[asr], memory=False)
    replaced = Agent(model=ScriptedModel([]), tools=[my_asr], memory=False)
    assert "asr" not in replaced.registry.names and "my_asr" in replaced.registry.names
    forced = Agent(model=ScriptedModel([]), tools=[asr], memory=False, replace_builtins=True)
    assert forced.registry.get("asr") is asr
    assert Agent(model=ScriptedModel([]), tools=[asr], memory=False, builtin=False).registry.names == ["asr"]


def test_a_built_in_name_is_refused_even_where_that_built_in_is_left_out(monkeypatch):
    import mcr.tools as tools_pkg

    monkeypatch.setenv("MCR_SAM_CHECKPOINT", "/nowhere/sam_vit_b.pth")
    monkeypatch.setattr(tools_pkg, "_warned", {"segment"})

    @tool
    def segment(ctx: ToolContext) -> str:
        """Masks."""
        return "mask"

    with pytest.raises(ToolNameError, match="built-in tool \\(left out on this machine\\)"):
        Agent(model=ScriptedModel([]), tools=[segment], memory=False)
    assert Agent(model=ScriptedModel([]), tools=[segment], memory=False, replace_builtins=True).registry.get("segment")


# ------------------------------------------------------------------ evidence from your own tools


def count_people_tool(reads: str | None):
    @tool(name="count_people", reads=reads)
    def count_people(ctx: ToolContext, span: TimeSpan) -> ToolResult:
        """Count the people in a span.

        Args:
            span: The span to look at.
        """
        ctx.require_video()
        return ToolResult("3 people stand on the deck", spans=[span])

    return count_people


def evidence_run(short_video, tmp_path, reads: str | None):
    steps = [tool_call("count_people", span=SPAN)] + [answer("3", evidence=[SPAN])] * 4
    model = ScriptedModel(steps)
    agent = Agent(
        model=model,
        tools=[count_people_tool(reads)],
        policy=Policy(perceive=False),  # no overview frames: the tool's look is the only one
        memory=False,
        trace_dir=tmp_path,
        max_steps=6,
    )
    return agent.run(short_video, "How many people are on the deck?")


def test_spans_a_tool_says_it_read_count_as_looked_at(short_video, tmp_path):
    result = evidence_run(short_video, tmp_path, "frames")
    assert result.status == "verified" and result.answer == "3", result.verdicts
    assert result.evidence == [TimeSpan(8, 9)]
    rules = [v for v in result.verdicts if v.get("support")]
    assert rules and rules[0]["support"][0]["readings"][0]["source"] == "count_people"


def test_spans_of_a_tool_that_declares_no_reading_are_not_evidence(short_video, tmp_path):
    result = evidence_run(short_video, tmp_path, None)
    assert result.status == "failed" and result.answer == "3"


def test_the_evidence_example_needs_no_policy_of_its_own():
    text = (ROOT / "examples" / "evidence_tool.py").read_text()
    assert "reading_tools" not in text and 'reads="frames"' in text


# ------------------------------------------------------------------ small snags


def test_a_single_tool_or_toolset_is_taken_as_a_list_of_one():
    measure = make_measure("a")
    assert "measure" in Agent(model=ScriptedModel([]), tools=measure, memory=False).registry.names

    class Meter(Toolset):
        @tool
        def level(self) -> int:
            """The level."""
            return 1

    assert "level" in Agent(model=ScriptedModel([]), tools=Meter(), memory=False).registry.names
    names = Agent(model=ScriptedModel([]), tools="inspect_frames", memory=False).registry.names
    assert names == ["inspect_frames"]

    def undecorated() -> int:
        return 1

    with pytest.raises(TypeError, match="is not a tool: decorate the function with @tool"):
        Agent(model=ScriptedModel([]), tools=undecorated, memory=False)


def test_baseline_agent_takes_a_step_budget_and_its_other_settings(short_video, tmp_path):
    measure = make_measure("level 7")
    model = ScriptedModel([tool_call("measure"), answer("seven")])
    agent = BaselineAgent(model, frames=4, max_steps=3, tools=[measure], trace_dir=tmp_path)
    assert agent.budget.max_steps == 3 and agent.policy == Policy.baseline(4) and agent.registry.names == ["measure"]
    result = agent.run(short_video, "What level?")
    assert result.status == "answered" and result.answer == "seven"
    assert BaselineAgent(ScriptedModel([]), builtin=True).registry.get("inspect_frames") is not None
    assert BaselineAgent(ScriptedModel([]), policy="plain").policy == Policy.plain()


def test_baseline_agent_and_policy_come_from_mcr():
    code = "import mcr; print(mcr.BaselineAgent.__name__, mcr.Policy.__name__, 'Policy' in dir(mcr))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["BaselineAgent", "Policy", "True"], proc.stderr[-1000:]


@pytest.mark.parametrize(
    "status, ok",
    [
        ("verified", True),
        ("unverified", True),
        ("answered", True),
        ("max_steps", True),
        ("timeout", True),
        ("max_tokens", True),
        ("max_model_calls", True),
        ("failed", False),
        ("no_answer", False),
        ("error", False),
        ("interrupted", False),
    ],
)
def test_ok_is_false_for_the_statuses_the_docs_name(status, ok):
    assert RunResult(status=status).ok is ok


def test_the_documented_status_table_and_ok_agree():
    readme = (ROOT / "docs" / "concepts" / "budgets.md").read_text()
    table = readme.split("`RunResult.ok` is false for the last four", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    last_four = [s.strip("` ") for row in rows[-4:] for s in row.split(",")]
    assert last_four == ["failed", "no_answer", "error", "interrupted"]
    statuses = [s.strip("` ") for row in rows for s in row.split(",")]
    assert [s for s in statuses if not RunResult(status=s).ok] == last_four


def test_subscribers_run_inline_on_the_runs_thread_before_it_goes_on(short_video, tmp_path):
    seen: list[tuple[str, bool, int]] = []
    trace = tmp_path / "run.jsonl"

    def slow(event):
        lines = len(trace.read_text().splitlines()) if trace.exists() else 0
        seen.append((event.kind, threading.current_thread() is threading.main_thread(), lines))
        time.sleep(0.2)

    model = ScriptedModel([tool_call("inspect_frames", span="00:00-00:02", max_frames=2), answer("bars")])
    agent = Agent(model=model, policy="plain", memory=False, subscribers=[slow])
    result = agent.run(short_video, "What is drawn?", trace=trace)
    assert result.answer == "bars"
    assert all(on_main for _, on_main, _ in seen) and seen[-1][0] == "run_finished"
    written = [lines for kind, _, lines in seen if kind != "model_delta"]
    assert written == list(range(1, len(written) + 1))  # each event is in the trace, the next one not yet
    for doc in (Agent.__doc__, (ROOT / "docs" / "concepts" / "loop.md").read_text()):
        assert "a slow one slows the run" in " ".join(doc.split())


def test_segment_is_left_out_while_its_checkpoint_is_not_here(monkeypatch, tmp_path, caplog):
    pytest.importorskip("segment_anything")
    import logging

    import mcr.tools as tools_pkg
    from mcr.tools import builtin_tools

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("MCR_SAM_CHECKPOINT", "MCR_SAM_MODEL", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tools_pkg, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="mcr.tools"):
        names = [t.name for t in builtin_tools()]
    assert "segment" not in names and "inspect_frames" in names
    said = [r.getMessage() for r in caplog.records if "segment" in r.getMessage()]
    assert len(said) == 1 and "`mcr-agent models pull sam`" in said[0] and "\n" not in said[0]
    checkpoint = tmp_path / ".cache" / "mcr" / "sam_vit_b_01ec64.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    assert "segment" in [t.name for t in builtin_tools()]  # on the machine: offered


# ------------------------------------------------------------------ the MCP server over stdio


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_mcp_server_over_stdio_stops_on_a_signal_while_stdin_is_open(tmp_path, signum, code):
    script = ROOT / "examples" / "scripts" / "boats.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcr.cli.main",
            "mcp",
            "--model",
            f"replay:{script}",
            "--memory",
            str(tmp_path / "m.db"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        proc.stdin.write((json.dumps(hello) + "\n").encode())
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())  # serving, and stdin stays open
        assert reply["id"] == 1 and "serverInfo" in reply["result"]
        sent = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == code
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
