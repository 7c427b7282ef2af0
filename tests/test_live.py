"""Live streams on 127.0.0.1: ffmpeg pushes a test-made stream with speech and drawn text (MPEG-TS
over UDP, HLS files served locally) while a session indexes it segment by segment."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from local_server import LocalServer
from media import DRAWN_CUES, SPOKEN_CUES

from mcr import Agent
from mcr.memory import Memory
from mcr.run.testing import ScriptedModel, answer, say, tool_call

pytestmark = pytest.mark.slow
OCR_STEP = 2.0  # the ocr stage reads a frame every two seconds


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def push(video: Path, target: str, seconds: float | None = None, fmt: str = "mpegts") -> subprocess.Popen:
    """ffmpeg sending ``video`` at its own pace (re-encoded with a keyframe a second)."""
    cut = ["-t", str(seconds)] if seconds else []
    cmd = ["ffmpeg", "-v", "error", "-re", "-i", str(video), *cut, "-c:v", "libx264", "-preset", "ultrafast"]
    cmd += ["-g", "10", "-c:a", "aac", "-f", fmt, target]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def wait_for(check, timeout: float) -> None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.2)


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 3}


def near(entries, text: str, start: float, tolerance: float) -> bool:
    """An entry sharing two words of ``text`` (speech recognition may get the rest wrong), starting
    within ``tolerance`` seconds of ``start``."""
    return any(len(words(text) & words(e.text)) >= 2 and abs(e.span.start - start) <= tolerance for e in entries)


def test_a_udp_stream_is_indexed_while_it_plays_asked_and_watched_for(cue_video, tmp_path):
    port = free_udp_port()
    events: list[dict] = []

    def reply(messages, tools):  # confirms a --when match; asks asr, then answers with what it gave
        if "Condition:" in messages[-1].text:
            return say("yes")
        said = [m.text for m in messages if m.role == "tool"]
        return answer(said[-1][-400:]) if said else tool_call("asr")

    model = ScriptedModel([reply] * 6)
    agent = Agent(model=model, policy="plain", memory=tmp_path / "m.db", trace_dir=False)
    with LocalServer() as hooks:
        session = agent.watch(
            f"udp://127.0.0.1:{port}",
            stages=["shots", "transcript", "ocr"],
            segment_s=10,
            when=["EXIT 14 AIRPORT"],
            webhook=f"{hooks.url}/hook",
            on_event=events.append,
        )
        pusher = push(cue_video, f"udp://127.0.0.1:{port}?pkt_size=1316")
        try:
            wait_for(lambda: len(session.record["segments"]) >= 3, 60)  # 30 s of stream indexed
            memory = Memory(tmp_path / "m.db")
            said = memory.store.query(session.id, kind="transcript")
            for start, text in SPOKEN_CUES[:3]:  # what was said so far, at its stream time
                assert near(said, text, start, 1.0), (text, [(e.span.start, e.text) for e in said])
            assert pusher.poll() is None  # still playing
            result = session.ask("What was said about the train?")
            assert "Edinburgh" in result.answer and "football" not in result.answer.lower()
            pusher.wait(timeout=120)
        finally:
            pusher.kill()
            session.stop()
        wait_for(lambda: hooks.posts, 10)

    memory = Memory(tmp_path / "m.db")
    said = memory.store.query(session.id, kind="transcript")
    shown = memory.store.query(session.id, kind="ocr")
    for start, text in SPOKEN_CUES:
        assert near(said, text, start, 1.0), (text, [(e.span.start, e.text) for e in said])
    for start, _end, text in DRAWN_CUES:  # the last one ends in the segment the stop flushed
        assert near(shown, text, start, OCR_STEP), (text, [(e.span.start, e.text) for e in shown])
    matches = [e for e in events if e["event"] == "match"]
    assert len(matches) == 1 and matches[0]["text"] == "EXIT 14 AIRPORT"
    segment = next(s for s in session.record["segments"] if s["index"] == matches[0]["segment"])
    assert segment["start"] <= 33.0 < segment["end"]  # the segment the words appeared in
    assert json.loads(hooks.posts[0][1])["query"] == "EXIT 14 AIRPORT"
    lags = [s["lag_s"] for s in session.record["segments"]]
    assert max(lags) < 10.0  # searchable within one segment length of arriving
    assert session.record["segments"][-1]["end"] > 62.0 and session.record["status"] == "stopped"


def udp_bound(port: int) -> bool:
    """Whether a process listens on the UDP port (it cannot be bound again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def event_lines(proc: subprocess.Popen) -> tuple[queue.Queue, list[dict]]:
    """The JSON events a process prints, as they come (a queue) and all of them (a list)."""
    came: queue.Queue = queue.Queue()
    seen: list[dict] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                seen.append(json.loads(line))
                came.put(seen[-1])
        came.put(None)

    threading.Thread(target=read, daemon=True).start()
    return came, seen


def next_event(came: queue.Queue, check) -> dict:
    """The next event that passes ``check``; fails when the process ends first."""
    while True:
        event = came.get(timeout=180)
        assert event is not None, "the watcher ended first"
        if check(event):
            return event


def test_the_cli_reconnects_after_a_drop_and_ctrl_c_flushes_the_last_segment(cue_video, tmp_path):
    port = free_udp_port()
    target = f"udp://127.0.0.1:{port}?pkt_size=1316"
    cmd = [sys.executable, "-m", "mcr.cli.main", "watch", f"udp://127.0.0.1:{port}", "--stages", "transcript"]
    cmd += ["--memory", str(tmp_path / "m.db"), "--json", "--no-input", "--segment", "10"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    came, lines = event_lines(watcher)
    pusher = None
    try:
        wait_for(lambda: udp_bound(port), 60)
        push(cue_video, target, seconds=17).wait(timeout=60)
        # the reader gives up on the silent source (its read timeout) and flushes what it had
        next_event(came, lambda e: e["event"] == "segment" and e["end"] > 16.0)
        wait_for(lambda: udp_bound(port), 60)  # and listens again
        pusher = push(cue_video, target)
        last = next_event(came, lambda e: e["event"] == "segment" and e["start"] > 16.0)
        watcher.send_signal(signal.SIGINT)  # mid-segment, while the stream still plays
        out, err = watcher.communicate(timeout=120)
    finally:
        watcher.kill()
        if pusher is not None:
            pusher.kill()
    assert watcher.returncode == 0, err
    gaps = [e for e in lines if e["event"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["wall_end"] - gaps[0]["wall_start"] >= 4.0
    assert abs(gaps[0]["at"] - 17.0) < 1.0
    session = err.split("as session ")[1].split()[0]
    record = json.loads((tmp_path / "live" / session / "session.json").read_text())
    flushed = record["segments"][-1]  # the last, partial segment: flushed at Ctrl-C and indexed
    assert flushed["start"] >= last["end"] - 0.5 and flushed["end"] > flushed["start"]
    memory = Memory(tmp_path / "m.db")
    said = memory.store.query(session, kind="transcript")
    assert near(said, SPOKEN_CUES[0][1], 2.0, 1.0) and near(said, SPOKEN_CUES[1][1], 14.0, 1.0)
    assert near(said, SPOKEN_CUES[0][1], 17.0 + 2.0, 1.5)  # after the gap, at the times that followed
    assert any(e.kind == "event" and "stream gap" in e.text for e in memory.store.query(session))

    model = tmp_path / "script.json"
    steps = [
        {"text": "Plan: answer from what was said."},
        {"answer": "the orange cat", "evidence": ["00:00:02.0-00:00:04.0"]},
        {"text": json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "the transcript says so"})},
    ]
    model.write_text(json.dumps({"steps": steps}))
    asked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcr.cli.main",
            "ask",
            session,
            "What animal is mentioned?",
            "--model",
            f"replay:{model}",
        ]
        + ["--memory", str(tmp_path / "m.db")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0 and asked.stdout.strip() == "the orange cat", asked.stdout + asked.stderr


def test_an_hls_stream_served_locally(cue_video, tmp_path):
    hls = tmp_path / "hls"
    hls.mkdir()

    class Files(LocalServer):
        def serve(self, handler, body):
            path = hls / handler.path.lstrip("/").split("?")[0]
            if not path.is_file():
                return self.send(handler, 404, b"", body=body)
            kind = "application/vnd.apple.mpegurl" if path.suffix == ".m3u8" else "video/mp2t"
            return self.send(handler, 200, path.read_bytes(), {"Content-Type": kind}, body)

    agent = Agent(model=ScriptedModel([]), memory=tmp_path / "m.db", trace_dir=False)
    with Files() as server:
        pusher = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-i", str(cue_video), "-c:v", "libx264", "-preset", "ultrafast"]
            + ["-g", "10", "-c:a", "aac", "-f", "hls", "-hls_time", "2", "-hls_list_size", "0"]
            + [str(hls / "live.m3u8")],
            stdin=subprocess.DEVNULL,
        )
        session = agent.watch(f"{server.url}/live.m3u8", stages=["transcript", "ocr"], segment_s=10)
        try:
            pusher.wait(timeout=120)
            session.wait(timeout=60)  # the playlist ends: the session ends with it
        finally:
            pusher.kill()
            session.stop()
    memory = Memory(tmp_path / "m.db")
    said = memory.store.query(session.id, kind="transcript")
    shown = memory.store.query(session.id, kind="ocr")
    for start, text in SPOKEN_CUES[1:]:  # the first seconds may come before the reader joined
        assert near(said, text, start, 1.0), (text, [(e.span.start, e.text) for e in said])
    for start, _end, text in DRAWN_CUES[1:]:
        assert near(shown, text, start, OCR_STEP), (text, [(e.span.start, e.text) for e in shown])
    assert os.path.isdir(tmp_path / "live" / session.id)
