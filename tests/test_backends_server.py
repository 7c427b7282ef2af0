"""``OpenAIServerModel`` against real HTTP servers on 127.0.0.1, through the ``openai`` client.

Two kinds of server: ``transformers serve`` running a tiny random Qwen3-VL (steered to
one fixed reply, so what it says is known; the model still runs), once parsing tool
calls natively and once leaving them in the text; and a scripted server (stdlib
``http.server``) for what a real one does only on a bad day: 429s, 500s, refusing
``tools=``, never answering. Every server is started and stopped by the test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from chat_server import Reply, ScriptedServer, completion
from media import make_code_video
from procs import free_port, transformers_serve

from mcr import Agent
from mcr.models import ModelError, load_model
from mcr.models.openai_server import OpenAIServerModel
from mcr.run.events import ModelCalled
from mcr.run.loop import answer_schema
from mcr.run.trace import read_trace
from mcr.tools.frames import inspect_frames
from mcr.types import Frames, FramesPart, Message, TextPart, ToolCall

pytest.importorskip("openai")

TOOLS = [inspect_frames.schema(), answer_schema()]
ASK = [
    Message("system", "You answer questions about a video by looking at it with tools."),
    Message("user", "What is shown in the video?"),
]
CALL = {"name": "inspect_frames", "arguments": {"span": "00:00:00.0-00:00:04.0"}}


# ---------------------------------------------------------------- scripted server


def test_text_tool_calls_and_reasoning_from_the_content():
    text = "<think>look first</think>\n<tool_call>\n" + json.dumps(CALL) + "\n</tool_call>"
    with ScriptedServer([Reply(completion(text, reasoning="the server's own reasoning field"))]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        out = model.generate(ASK, TOOLS, enable_thinking=True)
    assert [(c.name, c.arguments) for c in out.tool_calls] == [(CALL["name"], CALL["arguments"])]
    assert "look first" in out.reasoning and "own reasoning field" in out.reasoning and "<think>" not in out.text
    assert out.usage.input_tokens == 11 and out.usage.output_tokens == 7
    sent = srv.requests[0]
    assert sent["model"] == "stub-model" and [t["function"]["name"] for t in sent["tools"]][-1] == "answer"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True} and sent["temperature"] == 0.0


def test_native_tool_calls_and_streamed_text():
    with ScriptedServer([Reply(completion("Looking.", tool_calls=[CALL, {"name": "answer", "arguments": {}}]))]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        for out in (model.generate(ASK, TOOLS), model.generate(ASK, TOOLS, on_text=lambda piece: None)):
            assert [c.id for c in out.tool_calls] == ["call_0", "call_1"] and out.text == "Looking."
            assert out.tool_calls[0].arguments == CALL["arguments"] and out.tool_calls[1].name == "answer"
    text = "<tool_call>\n" + json.dumps(CALL) + "\n</tool_call>"
    with ScriptedServer([Reply(completion(text))]) as srv:
        pieces: list[str] = []
        out = OpenAIServerModel(srv.url, "stub-model").generate(ASK, TOOLS, on_text=pieces.append)
        assert len(pieces) > 3 and "".join(pieces) == text
        assert out.tool_calls[0].arguments == CALL["arguments"] and out.usage.output_tokens == 7
        assert srv.requests[0]["stream"] is True


def waits_of(monkeypatch) -> list[float]:
    """The seconds the model waits between tries, recorded instead of slept."""
    import mcr.models.openai_server as server_model

    waits: list[float] = []
    monkeypatch.setattr(server_model, "time", SimpleNamespace(sleep=waits.append))
    return waits


def test_429_and_500_are_retried_with_backoff(monkeypatch):
    waits = waits_of(monkeypatch)
    replies = [
        Reply({"error": {"message": "slow down"}}, 429, {"Retry-After": "0.2"}),
        Reply({"error": {"message": "overloaded"}}, 500),
        Reply(completion("<tool_call>" + json.dumps(CALL) + "</tool_call>")),
    ]
    with ScriptedServer(replies) as srv:
        model = OpenAIServerModel(srv.url, "stub-model", backoff_s=0.1)
        out = model.generate(ASK, TOOLS)
    assert len(srv.requests) == 3 and model.retries == 2
    assert out.tool_calls[0].name == "inspect_frames"
    # the server's Retry-After of 0.2 s, then the second backoff: 0.1 s x 2, plus up to a quarter of jitter
    assert waits[0] == 0.2 and 0.2 <= waits[1] <= 0.25 and len(waits) == 2

    with ScriptedServer([Reply({"error": {"message": "still overloaded"}}, 503)]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model", max_retries=2, backoff_s=0.05)
        with pytest.raises(ModelError, match=r"HTTP 503 \(3 tries\): still overloaded"):
            model.generate(ASK, TOOLS)
    assert len(srv.requests) == 3


def test_a_server_that_never_answers_times_out_clearly(monkeypatch):
    waits = waits_of(monkeypatch)
    with ScriptedServer([Reply(completion("late"), delay=30)]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model", timeout=1.0, max_retries=1, backoff_s=0.1)
        with pytest.raises(ModelError) as info:
            model.generate(ASK, TOOLS)
    assert "did not answer within 1 s (2 tries)" in str(info.value) and srv.url in str(info.value)
    assert len(srv.requests) == 2 and len(waits) == 1 and 0.1 <= waits[0] <= 0.125  # one backoff between


def test_a_server_that_refuses_tools_gets_them_in_the_prompt():
    refusal = {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice to be set'}}
    text = "<tool_call>\n" + json.dumps(CALL) + "\n</tool_call>"
    with ScriptedServer([Reply(refusal, 400), Reply(completion(text))]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        out = model.generate(ASK, TOOLS)
        again = model.generate(ASK, TOOLS)
    assert out.tool_calls[0].arguments == CALL["arguments"] and again.tool_calls
    assert "tools" in srv.requests[0] and "tools" not in srv.requests[1] and "tools" not in srv.requests[2]
    system = srv.requests[1]["messages"][0]
    assert system["role"] == "system" and '"name": "inspect_frames"' in system["content"]
    assert "<tool_call>" in system["content"]


def test_a_reply_schema_goes_as_response_format_and_a_refusal_drops_it():
    from mcr.run.verify import VERDICT_SCHEMA, parse_verdict

    verdict = '{"verdict": "supported", "confidence": 0.8, "reason": "the frames show it"}'
    refusal = {"error": {"message": "response_format json_schema is not supported by this server"}}
    with ScriptedServer([Reply(completion(verdict)), Reply(refusal, 400), Reply(completion(verdict))]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        first = model.generate(ASK, None, response_schema=VERDICT_SCHEMA, max_time=6.0)
        model.generate(ASK, None, response_schema=VERDICT_SCHEMA)  # refused, then asked again without
        model.generate(ASK, None, response_schema=VERDICT_SCHEMA)
    sent = srv.requests[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == VERDICT_SCHEMA
    assert "max_time" not in srv.requests[0]
    assert "response_format" in srv.requests[1] and "response_format" not in srv.requests[2]
    assert "response_format" not in srv.requests[3] and model.schema_refused
    assert parse_verdict(first.text).verdict == "supported"


def test_frames_go_as_timestamped_jpeg_parts(tmp_path):
    import numpy as np
    from PIL import Image

    frames = Frames(np.full((3, 480, 640, 3), 200, np.uint8), [1.0, 2.5, 4.0], [25, 62, 100])
    history = ASK + [
        Message("assistant", "", [ToolCall("inspect_frames", {"span": "00:00:01-00:00:04"}, "c1")]),
        Message("tool", [TextPart("3 frames"), FramesPart(frames)], tool_call_id="c1", name="inspect_frames"),
    ]
    with ScriptedServer([Reply(completion("Grey frames."))]) as srv:
        model = OpenAIServerModel(srv.url, "stub-model")
        assert model.generate(history, TOOLS).text == "Grey frames."
    messages = srv.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == json.dumps({"span": "00:00:01-00:00:04"})
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "3 frames"}
    parts = messages[4]["content"]
    texts = " ".join(p["text"] for p in parts if p["type"] == "text")
    assert "00:00:01.0" in texts and "00:00:02.5" in texts and "00:00:04.0" in texts
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 3 and all(u.startswith("data:image/jpeg;base64,") for u in urls)
    image = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert image.width * image.height <= model.profile.max_pixels
    assert image.width / image.height == pytest.approx(4 / 3, 0.02)


@pytest.mark.slow
def test_model_specs_and_the_command_line(tmp_path):
    video = make_code_video(tmp_path / "clip.mp4", seconds=4, tone_hz=None)
    look = {"name": "inspect_frames", "arguments": {"span": "00:00:00-00:00:03", "max_frames": 2}}
    answer = {"name": "answer", "arguments": {"answer": "bars", "evidence": ["00:00:00-00:00:03"]}}
    script = [Reply(completion(None, tool_calls=[look])), Reply(completion(None, tool_calls=[answer]))]
    with ScriptedServer(script) as srv:
        port = srv.url.split(":")[2].split("/")[0]
        model = load_model(f"openai:stub-model@127.0.0.1:{port}")
        assert model.base_url == srv.url and model.name == f"openai:stub-model@{srv.url}"
        assert load_model(None, endpoint=srv.url).model == "stub-model"  # asked the server
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        command = [
            sys.executable,
            "-m",
            "mcr.cli.main",
            "run",
            str(video),
            "What is drawn?",
            "--endpoint",
            srv.url,
            "--json",
            "--no-memory",
            "--policy",
            "plain",
        ]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["status"] == "answered" and result["answer"] == "bars" and result["steps"] == 2
    second = srv.requests[-1]["messages"]
    assert sum(p["type"] == "image_url" for m in second if isinstance(m["content"], list) for p in m["content"]) == 2

    gone = f"http://127.0.0.1:{free_port()}/v1"
    proc = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "run", str(video), "q", "--endpoint", gone, "--no-memory"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("mcr-agent: error: cannot list the models of the server at " + gone)
    with pytest.raises(ModelError, match="names no server"):
        load_model("openai:some-model")


# ------------------------------------------------------------ transformers serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``transformers serve`` on 127.0.0.1 with two copies of a tiny random Qwen3-VL steered to one
    tool call: ``native`` (the server parses the call) and ``text`` (its response template leaves
    the call in the content, as vLLM without a tool parser does)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from tiny_models import make_qwen3_vl, steer_to_reply

    root = tmp_path_factory.mktemp("served")
    native = make_qwen3_vl(root / "native")
    steer_to_reply(native)
    text = root / "text"
    shutil.copytree(native, text)
    config = json.loads((text / "tokenizer_config.json").read_text())
    config["response_template"] = {
        "defaults": {"role": "assistant"},
        "start_anchor": "<|im_start|>assistant\n",
        "fields": {"content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"}},
    }
    (text / "tokenizer_config.json").write_text(json.dumps(config))
    with transformers_serve(root) as url:
        yield {"url": url + "/v1", "native": str(native), "text": str(text)}


@pytest.mark.slow
def test_transformers_serve_returns_native_tool_calls(served):
    model = OpenAIServerModel(served["url"], served["native"], timeout=120)
    out = model.generate(ASK, TOOLS)
    assert [(c.name, c.arguments) for c in out.tool_calls] == [(CALL["name"], CALL["arguments"])]
    assert out.tool_calls[0].id.endswith("_tool_call_0") and out.raw == ""  # parsed by the server
    assert out.usage.input_tokens > 100 and out.usage.output_tokens > 10
    streamed = model.generate(ASK, TOOLS, on_text=lambda piece: None)
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [(CALL["name"], CALL["arguments"])]


@pytest.mark.slow
def test_transformers_serve_with_tool_calls_in_the_text(served):
    model = OpenAIServerModel(served["url"], served["text"], timeout=120)
    pieces: list[str] = []
    out = model.generate(ASK, TOOLS, on_text=pieces.append)
    assert "<tool_call>" in "".join(pieces) and out.raw == "".join(pieces)
    assert [(c.name, c.arguments) for c in out.tool_calls] == [(CALL["name"], CALL["arguments"])]
    assert out.tool_calls[0].id == ""  # read from the text; the loop numbers it


@pytest.mark.slow
def test_agent_runs_over_transformers_serve_with_frames(served, tmp_path):
    video = make_code_video(tmp_path / "clip.mp4", seconds=5, tone_hz=None)
    model = OpenAIServerModel(served["url"], served["native"], timeout=120)
    sent: list[dict] = []
    create = model.client.chat.completions.create

    def spy(**request):
        sent.append(request)
        return create(**request)

    model.client.chat.completions.create = spy
    agent = Agent(model=model, tools=[inspect_frames], builtin=False, max_steps=2, memory=False, policy="plain")
    events = list(agent.stream(video, "What is drawn?", trace=tmp_path / "t.jsonl"))
    finished = events[-1]
    assert finished.kind == "run_finished" and finished.status == "no_answer" and finished.error is None
    called = [e for e in events if isinstance(e, ModelCalled)]
    assert len(called) == 3 and all(e.output["tool_calls"][0]["name"] == "inspect_frames" for e in called)
    assert all(r.get("stream") for r in sent)  # streamed (the calls come as tool-call deltas, not text)
    images = [
        p
        for m in sent[1]["messages"]
        if isinstance(m["content"], list)
        for p in m["content"]
        if p["type"] == "image_url"
    ]
    returned = next(e for e in events if e.kind == "tool_returned")
    assert len(images) == len(returned.frames["timestamps"]) >= 3  # every frame the tool returned, as a JPEG
    kinds = [e.kind for e in read_trace(tmp_path / "t.jsonl")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "model_delta" not in kinds
    assert kinds.count("tool_called") == kinds.count("tool_returned") == 2
