"""``mcr-agent mcp`` over stdio, driven by the MCP client of the same package."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def payload(result) -> dict:
    if getattr(result, "structuredContent", None):
        found = result.structuredContent
        return found.get("result", found) if isinstance(found, dict) and set(found) == {"result"} else found
    return json.loads(result.content[0].text)


@pytest.mark.slow
def test_mcp_lists_the_tools_answers_and_searches(cue_video, tmp_path):
    script = tmp_path / "script.json"
    steps = [
        {"text": "Plan: read what is said, then answer."},
        {"answer": "platform seven", "evidence": ["00:00:26-00:00:29"]},
        {"text": json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "the transcript says so"})},
    ]
    script.write_text(json.dumps({"steps": steps}))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcr.cli.main", "mcp", "--model", f"replay:{script}", "--memory", str(tmp_path / "m.db")],
        cwd=str(tmp_path),
    )

    async def session_calls():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                asked = await session.call_tool(
                    "ask_video", {"video": str(cue_video), "question": "Which platform does the train leave from?"}
                )
                found = await session.call_tool("search_video", {"video": str(cue_video), "query": "EXIT 14 AIRPORT"})
                info = await session.call_tool("video_info", {"video": str(cue_video)})
                return listed, asked, found, info

    listed, asked, found, info = asyncio.run(asyncio.wait_for(session_calls(), 300))
    assert {t.name for t in listed.tools} == {"ask_video", "search_video", "index_video", "video_info"}
    answer = payload(asked)
    assert answer["answer"] == "platform seven" and answer["status"] == "verified"
    assert answer["evidence"] == [[26.0, 29.0]] and answer["trace"].endswith(".jsonl")
    best = payload(found)["results"][0]
    assert best["span"][0] <= 35.0 and best["span"][1] >= 33.0
    assert payload(info)["duration"] > 60


def test_mcp_tool_errors_keep_their_cause_in_one_line(cue_video, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"steps": [{"answer": "x"}]}))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcr.cli.main", "mcp", "--model", f"replay:{script}", "--memory", str(tmp_path / "m.db")]
        + ["--media-root", str(root)],
        cwd=str(tmp_path),
    )
    errors = tmp_path / "stderr.txt"

    async def session_calls():
        with open(errors, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    missing = await session.call_tool("video_info", {"video": "missing.mp4"})
                    outside = await session.call_tool("video_info", {"video": str(cue_video)})
                    search = await session.call_tool("search_video", {"video": "../x.mp4", "query": "a"})
                    return missing, outside, search

    missing, outside, search = asyncio.run(asyncio.wait_for(session_calls(), 120))
    for result, words in ((missing, "not a file under the media roots"), (outside, "outside the media roots")):
        assert result.is_error and words in result.content[0].text, result.content[0].text
    assert search.is_error and "'..'" in search.content[0].text
    said = errors.read_text()
    assert "Traceback" not in said and len(said.strip().splitlines()) <= 3, said  # one line a call at most
