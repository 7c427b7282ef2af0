"""One builder per index stage: concurrent builds store every entry once, the second builder
waits and reuses (and says so), a dead builder's stage is taken over and resumed, and a stage
an older version stored twice is rebuilt."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter

import pytest
from media import shared_clip
from procs import run_cli

from mcr.media.video import Video
from mcr.memory import ChunkResult, Memory, MemoryEntry, VideoIndex
from mcr.memory.lease import Lease
from mcr.types import TimeSpan


class SlowStage:
    """A stage writing one entry per chunk, whose first chunk can be held until an event is set
    (the test is about the index's bookkeeping, not about a perception engine)."""

    name = "slow"
    version = "1"
    chunk_s = 2.0

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.hold = hold
        self.started = threading.Event()
        self.chunks: list[float] = []

    def skip_reason(self, video):
        return None

    def run_chunk(self, video, span: TimeSpan) -> ChunkResult:
        self.chunks.append(span.start)
        self.started.set()
        if self.hold is not None:  # the first chunk waits until the test lets it go on
            assert self.hold.wait(120), "never released"
            self.hold = None
        return ChunkResult([MemoryEntry(f"chunk at {span.start:g}", "observation", span=span)])


def counts(db, source: str) -> Counter:
    with sqlite3.connect(db) as c:
        rows = c.execute('SELECT start, "end", text FROM entries WHERE source = ?', (source,)).fetchall()
    return Counter(rows)


def test_two_builders_at_once_store_each_entry_once_and_the_second_reuses(tmp_path, cut_video):
    db = tmp_path / "memory.db"
    video = Video(cut_video)  # 24 s: 12 chunks
    reports, notices = {}, []
    waiting = threading.Event()  # the second builder has said it waits: the first may finish
    stages = {"a": SlowStage(hold=waiting), "b": SlowStage()}

    def notice(line: str) -> None:
        notices.append(line)
        waiting.set()

    def build(name: str) -> None:
        memory = Memory(db, encoder=None)
        reports[name] = VideoIndex(video, memory).build([stages[name]], notice=notice)[0]
        memory.close()

    first = threading.Thread(target=build, args=("a",))
    first.start()
    try:
        assert stages["a"].started.wait(120)  # the first builder holds the lease and is in its first chunk
        build("b")
    finally:
        waiting.set()
        first.join()
    found = counts(db, "index:slow")
    assert len(found) == 12 and set(found.values()) == {1}
    assert reports["a"].status == "built" and reports["a"].entries == 12
    assert reports["b"].status == "reused" and reports["b"].entries == 12
    assert stages["b"].chunks == []  # the waiting builder computed nothing
    assert reports["b"].reason.startswith("built by process ") and " while this one waited " in reports["b"].reason
    assert notices == [f"slow: process {__import__('os').getpid()} is building it; waiting for it to finish"]


def test_a_dead_builders_lease_is_taken_over_and_its_stage_resumed(tmp_path, cut_video):
    db = tmp_path / "memory.db"
    video = Video(cut_video)
    memory = Memory(db, encoder=None)
    stage = SlowStage()
    index = VideoIndex(video, memory)
    index.store.remember_video(video.id, str(video.path), video.info())
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead_pid = gone.pid
    # a builder that committed three chunks and was killed: its lease and cursor are left behind
    lease = Lease(index.store, video.id, "slow")
    lease.try_take()
    index._set_state(stage, "running", 0.0, video.duration)
    for k in range(3):
        span = TimeSpan(2.0 * k, 2.0 * k + 2.0)
        index._commit(stage, lease, span.start, span, stage.run_chunk(video, span), {})
    with index.store.write() as c:
        c.execute("UPDATE leases SET pid = ?", (dead_pid,))
    stage.chunks.clear()
    report = index.build([stage])[0]
    assert report.status == "resumed" and report.entries == 12
    assert report.reason == f"process {dead_pid} stopped before finishing it"
    assert stage.chunks == [2.0 * k for k in range(3, 12)]
    assert set(counts(db, "index:slow").values()) == {1}
    assert index.store.conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    memory.close()


def test_a_stage_stored_twice_by_an_older_version_is_rebuilt(tmp_path, cut_video):
    db = tmp_path / "memory.db"
    video = Video(cut_video)
    memory = Memory(db, encoder=None)
    index = VideoIndex(video, memory)
    assert index.build([SlowStage()])[0].status == "built"
    with memory.store.write() as c:  # what two builders without a lease left: every entry twice
        c.execute(
            'INSERT INTO entries (video_id, start, "end", kind, text, source, created_at, data) '
            'SELECT video_id, start, "end", kind, text, source, created_at, data FROM entries'
        )
    assert set(counts(db, "index:slow").values()) == {2}
    report = index.build([SlowStage()])[0]
    assert report.status == "built" and "rebuilt: an older build stored some entries twice" in report.reason
    assert len(counts(db, "index:slow")) == 12 and set(counts(db, "index:slow").values()) == {1}
    assert index.build([SlowStage()])[0].status == "reused"
    memory.close()


@pytest.mark.slow
def test_two_index_commands_at_once_store_each_transcript_sentence_once(tmp_path):
    clip = shared_clip("megamind.mp4")
    db = tmp_path / "memory.db"
    args = [sys.executable, "-m", "mcr.cli.main", "index", str(clip), "--stages", "transcript", "--memory", str(db)]
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
    procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    found = counts(db, "index:transcript")
    assert found and set(found.values()) == {1}, found
    lines = [out.splitlines()[0] for out, _ in outs]
    assert sorted(line.split(",")[0] for line in lines) == ["transcript: built", "transcript: reused"], lines
    later = [(out, err) for out, err in outs if "transcript: reused" in out][0]
    if "built by process" in later[0]:  # it came while the other was building (as a rule): it waited and said so
        assert "is building it; waiting for it to finish" in later[1]
    else:  # it came after the other had finished: a plain reuse
        assert "waiting" not in later[1]
    exported = run_cli("memory", "export", "--memory", db, cwd=tmp_path)
    assert exported.returncode == 0 and len([json.loads(line) for line in exported.stdout.splitlines()]) == len(found)
