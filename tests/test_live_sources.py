"""Live sessions from the user's side when things are not as they should be: a memory given as
a relative path (and a folder with a quote in its name), and sources that never connect."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from media import ffmpeg

from mcr.agents.live import LiveSession, snapshot
from mcr.media.live import LiveReader
from mcr.media.video import Video
from mcr.memory import Memory


def segment(path, seconds: float) -> None:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", str(path))


def test_a_session_is_joined_with_a_relative_memory_path_and_a_quote_in_the_folder(tmp_path):
    """The tests work in tmp_path (conftest), so ``it's here/m.db`` is relative to the working folder."""
    memory = Memory("it's here/m.db")
    folder = tmp_path / "it's here" / "live" / "live-test"
    folder.mkdir(parents=True)
    rows = []
    for i, (start, seconds) in enumerate([(0.0, 2.0), (2.0, 3.0)], 1):
        segment(folder / f"seg-{i:05d}.mp4", seconds)
        rows.append({"index": i, "path": f"seg-{i:05d}.mp4", "start": start, "end": start + seconds})
        rows[-1].update(wall_start=1e9 + start, wall_end=1e9 + start + seconds)
    record = {"id": "live-test", "source": "udp://x", "started": 1e9, "segments": rows, "gaps": []}
    (folder / "session.json").write_text(json.dumps(record), encoding="utf-8")
    joined = snapshot("live-test", memory)
    assert joined.path.is_absolute() and abs(Video(joined.path).duration - 5.0) < 0.25


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.slow
@pytest.mark.parametrize("source", ["tcp://127.0.0.1:{port}", "rtmp://127.0.0.1:{port}/live/x"])
def test_a_source_that_never_connects_is_reported_at_each_try_and_given_up(tmp_path, source):
    failures = []
    reader = LiveReader(
        source.format(port=closed_port()),
        tmp_path / "segments",
        on_failure=lambda attempt, reason: failures.append((attempt, reason)),
        open_timeout_s=2.0,
        give_up_after_s=2.0,
    )
    t0 = time.monotonic()
    reader.run()  # returns by itself: it gives up
    assert time.monotonic() - t0 < 30
    assert len(failures) >= 2 and [a for a, _ in failures] == list(range(1, len(failures) + 1))
    assert all(reason for _, reason in failures)
    assert "gave nothing after" in reader.error and str(len(failures)) in reader.error
    assert reader.segments == 0


class JunkSender:
    """A TCP sender on 127.0.0.1 that answers every connection with random bytes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(os.urandom(256 * 1024))
                except OSError:
                    pass


@pytest.mark.slow
def test_random_bytes_as_a_source_are_reported_and_the_session_says_it_failed(tmp_path):
    sender = JunkSender()
    events = []
    session = LiveSession(
        f"tcp://127.0.0.1:{sender.port}", tmp_path / "m.db", ["shots"], on_event=events.append, give_up_after_s=2.0
    )
    try:
        session.start()
        session.wait(timeout=60)
    finally:
        sender.sock.close()
    assert not session.watching
    failed = [e for e in events if e["event"] == "source_failed"]
    assert len(failed) >= 2 and all(e["reason"] for e in failed)
    assert [e["event"] for e in events][-1] == "source_gave_up" and session.error
    record = json.loads((session.folder / "session.json").read_text())
    assert record["status"] == "failed" and record["error"] == session.error
    session.stop()
    assert json.loads((session.folder / "session.json").read_text())["status"] == "failed"
