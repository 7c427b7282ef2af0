"""Memory with the real MiniLM encoder, real SQLite, real processes and real videos."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from procs import run_cli, worker

from mcr import Agent, TimeSpan
from mcr.media.video import Video
from mcr.memory import Memory, MemoryEntry, MemoryStore, MemoryStoreError, VideoIndex
from mcr.run.testing import ScriptedModel, answer, tool_call
from mcr.run.trace import read_trace
from mcr.tools.shots import ShotStage, shot_spans

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def memory(tmp_path):
    m = Memory(tmp_path / "memory.db")
    yield m
    m.close()


def test_semantic_search_ranks_paraphrase_first(memory):
    texts = [
        "A woman in a red coat opens the front door.",
        "The dog sleeps on the sofa all afternoon.",
        "Two cars wait at a traffic light in the rain.",
        "A man is boiling pasta on the kitchen stove.",
        "The scoreboard shows three goals to one.",
        "Children are playing football in the park.",
    ]
    for i, t in enumerate(texts):
        memory.write(t, "observation", video_id="v1", span=[10 * i, 10 * i + 5])
    hits = memory.search("someone cooks noodles in a pot", k=3)
    assert hits[0].entry.text == "A man is boiling pasta on the kitchen stove."
    assert hits[0].score > hits[1].score + 0.1
    hits = memory.search("what was the final score of the match", k=2)
    assert hits[0].entry.text.startswith("The scoreboard")
    # filters: video and kind and span narrow the ranking
    memory.write("Pasta is being cooked by a chef.", "caption", video_id="v2", span=[0, 5])
    assert memory.search("cooking pasta", video_id="v2", k=1)[0].entry.video_id == "v2"
    assert [h.entry.kind for h in memory.search("cooking pasta", kind="caption", k=5)] == ["caption"]
    assert memory.search("cooking pasta", video_id="v1", span="00:00-00:12", k=5)[0].entry.text.startswith(
        "A woman"
    ) or all(h.entry.span.start <= 12 for h in memory.search("cooking pasta", video_id="v1", span="0-12", k=5))


@pytest.mark.slow
def test_embeddings_are_stored_in_batches(memory):
    for i in range(300):
        memory.write(f"note number {i}", "fact", video_id="v")
    assert len(memory.store.pending_embeddings(memory.encoder.name, limit=1000)) == 300
    assert memory.embed_pending(batch=128) == 300
    assert memory.store.pending_embeddings(memory.encoder.name) == []
    ids, vecs = next(memory.store.embeddings(memory.encoder.name))
    assert vecs.shape == (300, 384) and abs(float((vecs[0] ** 2).sum()) - 1) < 1e-4


def test_time_queries_return_exactly_the_overlapping_entries(memory):
    spans = {"a": (0, 5), "b": (4, 9), "c": (10, 12), "d": (12, 20), "e": (30, 31)}
    for name, (s, e) in spans.items():
        memory.write(name, "event", video_id="v", span=[s, e])
    memory.write("untimed fact", "fact", video_id="v")
    memory.write("other video", "event", video_id="w", span=[0, 100])
    got = [e.text for e in memory.store.query("v", span=TimeSpan(5, 11))]
    assert got == ["a", "b", "c"]  # 5 touches a's end; 11 is inside c; d starts at 12
    assert [e.text for e in memory.store.query("v", span=TimeSpan(12, 12))] == ["c", "d"]
    assert [e.text for e in memory.store.query("v", span=TimeSpan(21, 29))] == []
    assert [e.text for e in memory.store.nearest(26, "v", k=2)] == ["e", "d"]
    assert [h.entry.text for h in memory.search("", video_id="v", near=11.0, k=1)] == ["c"]


def test_graph_answers_before_and_after(memory):
    g = memory.graph
    g.add_event("Anna enters the kitchen", TimeSpan(60, 70), ["Anna"], "v")
    g.add_event("Anna picks up a knife", TimeSpan(300, 310), ["Anna"], "v")
    g.add_event("Ben opens the fridge", TimeSpan(400, 405), ["Ben"], "v")
    g.add_event("Anna hands the knife to Ben", TimeSpan(1300, 1310), ["Anna", "Ben"], "v")
    g.add_event("Anna leaves", TimeSpan(1900, 1910), ["anna"], "v")
    before = g.query("Anna", "before", time=1200, video_id="v")
    assert [e.label for e in before] == ["Anna enters the kitchen", "Anna picks up a knife"]
    after = g.query("ben", "after", time=1000, video_id="v")
    assert [e.label for e in after] == ["Anna hands the knife to Ben"]
    assert [e.label for e in g.query("Anna", "during", span=TimeSpan(305, 1305), video_id="v")] == [
        "Anna picks up a knife",
        "Anna hands the knife to Ben",
    ]
    nxg = g.to_networkx("v")
    rel = {(a, b, d["relation"]) for a, b, d in nxg.edges(data=True)}
    assert ("event:v:1", "event:v:2", "before") in rel
    assert sum(1 for *_, r in rel if r == "participates") == 6
    reopened = Memory(memory.path)
    assert [e.label for e in reopened.graph.query("Ben", video_id="v")] == [
        "Ben opens the fridge",
        "Anna hands the knife to Ben",
    ]


def test_shot_stage_finds_the_cuts(cut_video, memory):
    video = Video(cut_video)
    reports = VideoIndex(video, memory).build([ShotStage(chunk_s=5)])
    assert reports[0].status == "built" and reports[0].entries == 5
    cuts = sorted(e.span.end for e in VideoIndex(video, memory).entries("shots"))
    assert [round(c) for c in cuts] == [4, 8, 12, 16, 20]
    assert len(shot_spans(VideoIndex(video, memory).entries("shots"), video.duration)) == 6


def test_a_stage_registered_by_name_is_built_by_name(cut_video, memory):
    from mcr.memory import ChunkResult, check_stages, register_stage, stage_names
    from mcr.memory.index import _STAGES

    class ChunkMarks:  # a user's own stage: one entry per chunk
        name, version, chunk_s = "chunk_marks", "1", 10.0

        def skip_reason(self, video):
            return None

        def run_chunk(self, video, span):
            return ChunkResult([MemoryEntry(f"chunk {span}", "observation", span=span)])

    register_stage("chunk_marks", ChunkMarks)
    try:
        check_stages(["shots", "chunk_marks"])
        assert "chunk_marks" in stage_names()
        (report,) = VideoIndex(Video(cut_video), memory).build(["chunk_marks"])
        assert (report.status, report.entries) == ("built", 3)  # 24 s in chunks of 10 s
        # a tool reads it by name; the settings a tool passes (device, models) that it does not take are left out
        from mcr.tools import ToolContext
        from mcr.tools.stages import stage_data

        data = stage_data(ToolContext(video=Video(cut_video), memory=memory, device="cpu"), "chunk_marks")
        assert [e.text for e in data.entries] == [
            "chunk 00:00:00.0-00:00:10.0",
            "chunk 00:00:10.0-00:00:20.0",
            "chunk 00:00:20.0-00:00:24.0",
        ]
    finally:
        _STAGES.pop("chunk_marks", None)


def test_a_stage_package_that_cannot_load_is_named_and_hides_nothing(monkeypatch):
    import importlib.metadata as metadata

    from mcr.errors import StageError
    from mcr.memory import check_stages, stage_names

    broken = metadata.EntryPoint("faces", "no_such_package.stages:FaceStage", "mcr.stages")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real(group=group), broken])
    monkeypatch.setattr("mcr.memory.index._BROKEN", {})
    assert {"shots", "ocr", "transcript", "embeddings"} <= set(stage_names())  # the others still load
    with pytest.raises(StageError, match="index stage 'faces': no_such_package.stages:FaceStage could not be loaded"):
        check_stages(["faces"])


def test_memory_finds_the_perception_stages_by_name_without_importing_tools_first():
    code = (
        "import sys; from mcr.memory import make_stage, stage_names;"
        "before = any(m.startswith('mcr.tools') for m in sys.modules);"
        "print(before, stage_names(), type(make_stage('ocr')).__module__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.split("\n")[0]
        == "False ['captions', 'embeddings', 'ocr', 'shots', 'subtitles', 'transcript'] mcr.tools.ocr"
    )


@pytest.mark.slow
def test_killed_indexing_resumes_without_loss(cut_video, tmp_path):
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(worker("shots_build", cut_video, db, "0.4"), stdout=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stdout:
        if line.startswith("chunk"):
            seen += 1
        if seen == 5:  # five chunks (10 s, two cuts) committed, the sixth begun or pausing
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = MemoryStore(db)
    vid = Video(cut_video).id
    cursor = store.conn.execute("SELECT cursor, status FROM stages WHERE video_id = ?", (vid,)).fetchone()
    assert cursor[1] == "running" and 10.0 <= cursor[0] < 24.0
    committed = sorted(round(e.span.end) for e in store.query(vid, kind="shot"))
    expected_so_far = [c for c in (4, 8, 12, 16, 20) if c < cursor[0]]
    assert committed == expected_so_far  # every committed chunk whole, nothing half-written
    store.close()

    done = subprocess.run(worker("shots_build", cut_video, db, "0"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "report resumed 5" in done.stdout
    first_chunk = float(done.stdout.split()[1])
    assert first_chunk > cursor[0]  # it went on from the cursor, not from 0
    final = MemoryStore(db)
    assert sorted(round(e.span.end) for e in final.query(vid, kind="shot")) == [4, 8, 12, 16, 20]


def test_two_readers_and_one_writer_across_processes(tmp_path):
    db = tmp_path / "shared.db"
    MemoryStore(db).close()
    readers = [subprocess.Popen(worker("store_reader", db), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        writer = subprocess.run(worker("store_writer", db), capture_output=True, text=True, timeout=120)
        assert writer.returncode == 0, writer.stderr
        assert writer.stdout.strip() == "wrote 2000"
        for r in readers:
            out, _ = r.communicate(timeout=90)
            assert r.returncode == 0, out
            status, polls, low, high, monotonic = out.split()
            assert status == "ok" and high == "2000" and monotonic == "True"
    finally:
        for r in readers:  # a reader still polling (the writer failed) stops with the test
            r.kill()
            r.wait()


def test_second_run_on_renamed_copy_reuses_index_and_memory(cut_video, tmp_path):
    db = tmp_path / "ws.db"
    first = Agent(
        policy="plain",
        model=ScriptedModel(
            [
                tool_call(
                    "memory_write",
                    text="The third shot shows a colourful fractal.",
                    span="00:08-00:12",
                    kind="observation",
                ),
                answer("six shots", evidence=["00:00-00:24"]),
            ]
        ),
        memory=db,
        trace_dir=tmp_path / "t1",
    ).run(cut_video, "How many shots are there?")
    assert first.status == "answered"
    events = read_trace(first.trace_path)
    assert [(e.stage, e.status) for e in events if e.kind == "index_stage"] == [("shots", "built")]

    copy = tmp_path / "moved" / "renamed.mp4"
    copy.parent.mkdir()
    shutil.copy(cut_video, copy)
    model = ScriptedModel([tool_call("memory_search", query="fractal"), answer("a fractal")])
    second = Agent(policy="plain", model=model, memory=db, trace_dir=tmp_path / "t2").run(
        copy, "What does the third shot show?"
    )
    events = read_trace(second.trace_path)
    assert [(e.stage, e.status, e.entries) for e in events if e.kind == "index_stage"] == [("shots", "reused", 5)]
    first_view = model.calls[0].messages
    digest = next(m.text for m in first_view if m.text.startswith("[Memory]"))
    assert (
        "5 shot" in digest and "colourful fractal" in digest and "Q: How many shots are there? A: six shots" in digest
    )
    found = [e for e in events if e.kind == "tool_returned"][0]
    assert found.trust == "untrusted" and found.text.splitlines()[0] == '<data source="memory" trust="untrusted">'
    assert found.text.splitlines()[1].endswith(
        "The third shot shows a colourful fractal. (score %s)" % found.text.split("score ")[1].split(")")[0]
    )

    changed = tmp_path / "changed.mp4"  # same pictures, other bytes: a changed file
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(copy), "-c", "copy", "-metadata", "title=edited", str(changed)],
        check=True,
        timeout=60,
    )
    third = Agent(policy="plain", model=ScriptedModel([answer("x")]), memory=db, trace_dir=tmp_path / "t3").run(
        changed, "q?"
    )
    stages = [e for e in read_trace(third.trace_path) if e.kind == "index_stage"]
    assert stages[0].status == "built" and stages[0].video_id != events[1].video_id


def test_memory_tools_and_event_graph_in_the_loop(tmp_path, cut_video):
    model = ScriptedModel(
        [
            tool_call("memory_write", text="Anna enters", span="00:01-00:02", kind="event", entities=["Anna"]),
            tool_call("memory_write", text="Anna leaves", span="00:20-00:21", kind="event", entities=["Anna"]),
            tool_call("memory_events", entity="anna", relation="before", time="00:00:10"),
            tool_call("memory_events", entity="Zed"),
            tool_call("memory_write", text="late", span="00:50-00:55"),
            answer("she enters"),
        ]
    )
    Agent(policy="plain", model=model, memory=tmp_path / "m.db", index=(), trace_dir=tmp_path).run(
        cut_video, "What does Anna do?"
    )
    results = [m.text for m in model.calls[-1].messages if m.role == "tool"]
    assert results[0] == "saved as m1." and results[1] == "saved as m2."
    assert results[2] == '<data source="memory" trust="untrusted">\n00:00:01.0-00:00:02.0 Anna enters [Anna]\n</data>'
    assert "no events of 'Zed'" in results[3] and "Known: Anna" in results[4 - 1]
    assert results[4].startswith("retry: the span")


def test_damaged_spans_are_skipped_and_recorded_and_the_run_goes_on(cut_video, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(Path(cut_video).read_bytes())
    data[-100] ^= 0xFF  # inside the sample tables at the end: some packets of the middle shots break
    damaged.write_bytes(bytes(data))
    result = Agent(
        policy="plain", model=ScriptedModel([answer("x")]), memory=tmp_path / "m.db", trace_dir=tmp_path
    ).run(damaged, "q?")
    stage = [e for e in read_trace(result.trace_path) if e.kind == "index_stage"][0]
    assert result.status == "answered"
    assert (
        stage.status == "built" and stage.video_id and stage.entries == 2
    )  # the cuts at 4 s and 8 s, before the damage
    assert "damaged spans skipped: 00:00:09.0-00:00:24.0" in stage.reason and "cannot be decoded" in stage.reason


def test_foreign_or_unreadable_database_is_refused_untouched(tmp_path):
    text_file = tmp_path / "notes.db"
    text_file.write_text("my notes, not a database\n" * 10)
    before = text_file.read_bytes()
    with pytest.raises(MemoryStoreError, match=r"notes\.db is not an MCR memory database"):
        Memory(text_file)
    assert text_file.read_bytes() == before

    import sqlite3

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
    conn.execute("INSERT INTO accounts VALUES (1, 99.5)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(MemoryStoreError, match="another program"):
        MemoryStore(other)
    assert other.read_bytes() == before

    with pytest.raises(MemoryStoreError, match="is a folder"):
        MemoryStore(tmp_path)


def test_bad_entries_are_refused(memory):
    with pytest.raises(ValueError, match="unknown memory kind"):
        memory.write("x", "gossip")
    with pytest.raises(ValueError, match="needs some text"):
        memory.write("   ")
    with pytest.raises(ValueError, match="confidence"):
        memory.store.add(MemoryEntry("x", confidence=3))


def _cli(*args, cwd):
    return run_cli(*args, cwd=cwd, columns=160)


@pytest.mark.slow
def test_memory_and_index_commands(tmp_path, cut_video):
    built = _cli("index", cut_video, "--stages", "shots", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "shots: built, 5 entries" in built.stdout and "ocr" not in built.stdout
    again = _cli("index", cut_video, "--stages", "shots", cwd=tmp_path)
    assert "shots: reused, 5 entries" in again.stdout
    listed = _cli("memory", "list", "--video", cut_video, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.count("shot cut at") == 5
    exported = _cli("memory", "export", cwd=tmp_path)
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 5 and {r["kind"] for r in rows} == {"shot"}
    found = _cli("memory", "search", "cut near eight seconds", "-k", "2", cwd=tmp_path)
    assert found.returncode == 0 and found.stdout.count("shot cut at") == 2
    refused = _cli("memory", "clear", cwd=tmp_path)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    cleared = _cli("memory", "clear", "--yes", cwd=tmp_path)
    assert "deleted 5 entries" in cleared.stdout
    assert _cli("memory", "export", cwd=tmp_path).stdout == ""
    missing = _cli("memory", "list", "--workspace", tmp_path / "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("mcr-agent: error: no memory database at")


@pytest.mark.slow
def test_short_queries_go_through_onnx_runtime_with_the_same_embeddings(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    import numpy as np

    from mcr.memory.encoder import SentenceEncoder

    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    enc = SentenceEncoder()
    texts = ["who gave the knife away?", "a cat asleep on a piano in the quiet library after the storm", "x"]
    fast = enc.encode(texts)
    assert enc._fast is not False and list((tmp_path / "cache" / "onnx").glob("sentence-*.onnx"))
    usual = enc.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert fast.shape == (3, enc.dim) and np.abs(fast - usual).max() < 1e-4
    many = enc.encode(texts * 3)  # a batch takes the usual path
    assert np.abs(many[:3] - usual).max() < 1e-5
    monkeypatch.setenv("MCR_ONNX", "0")
    off = SentenceEncoder()
    assert np.abs(off.encode(texts[:1]) - usual[:1]).max() < 1e-5 and off._fast is False
