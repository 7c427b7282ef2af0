"""The ``captions`` index stage: clips from the shots, frames per clip, captions stored and
embedded, entities in the graph, failures counted, a killed build resumed, the CLI and the
agent, and a tiny random Qwen3-VL through transformers (plumbing, not quality)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time

import pytest
from known_shots import SHOT_STARTS, known_shots
from procs import run_cli, worker, worker_env

from mcr.media.video import Video
from mcr.memory import ChunkResult, Memory, MemoryStore, VideoIndex
from mcr.memory.index import make_stage
from mcr.models import ModelOutput
from mcr.run.testing import RecordingModel
from mcr.tools.captions import CAPTION_SYSTEM, clip_spans, noun_phrases, parse_caption
from mcr.tools.shots import ShotStage
from mcr.types import FramesPart, TimeSpan, Usage


def clip_of(messages) -> tuple[TimeSpan, list[float]]:
    """The clip a caption request names and the timestamps of the frames it carries."""
    (frames,) = [p.frames for p in messages[-1].parts if isinstance(p, FramesPart)]
    head = messages[-1].parts[0].text
    start, end = re.search(r"(\d\d:\d\d:\d\d\.\d)-(\d\d:\d\d:\d\d\.\d)", head).groups()
    return TimeSpan.parse(f"{start}-{end}"), list(frames.timestamps)


def captioner(fail_at: float | None = None, sleep_s: float = 0.0):
    """A captioning function: a JSON caption naming the clip's start; raises on the clip holding ``fail_at``."""

    def reply(messages, tools=None, **options):
        assert messages[0].text == CAPTION_SYSTEM and tools is None
        span, _ = clip_of(messages)
        if fail_at is not None and span.start <= fail_at < span.end:
            raise RuntimeError("the captioner broke on this clip")
        time.sleep(sleep_s)
        text = f"A red ball rolls past a tall man at second {span.start:.0f}."
        return ModelOutput(json.dumps({"caption": text, "entities": ["red ball", "tall man"]}), usage=Usage(50, 12, 1))

    return reply


@pytest.fixture
def memory(tmp_path, cut_video):
    m = Memory(tmp_path / "memory.db")
    known_shots(cut_video, m)
    yield m
    m.close()


def test_clips_are_shots_cut_into_equal_parts_of_at_most_clip_s():
    shots = [TimeSpan(0, 4), TimeSpan(4, 25), TimeSpan(25, 25.3), TimeSpan(25.3, 30)]
    clips = clip_spans(shots, 10.0)
    assert [(round(c.start, 2), round(c.end, 2)) for c in clips] == [
        (0, 4),
        (4, 11),
        (11, 18),
        (18, 25.3),  # the 0.3 s flicker joins the clip before it (7.3 s, still under 10 s)
        (25.3, 30),
    ]
    assert all(c.duration <= 10.0 + 1e-9 for c in clips)
    assert [(c.start, c.end) for c in clip_spans([TimeSpan(0, 20)], 10.0)] == [(0, 10), (10, 20)]


def test_caption_replies_json_or_text_give_caption_and_entities():
    assert parse_caption('{"caption": "A dog runs.", "entities": ["dog", "Dog", "ball"]}') == (
        "A dog runs.",
        ["dog", "ball"],
    )
    text, entities = parse_caption("<think>hmm</think>A man in a red coat opens the door while two dogs bark.")
    assert text == "A man in a red coat opens the door while two dogs bark."
    assert entities == ["man", "red coat", "door", "dogs"]
    assert noun_phrases("The chef is cutting an onion") == ["chef", "onion"]
    assert parse_caption('```json\n{"caption": "A cat sleeps on the sofa."}\n```')[1] == ["cat", "sofa"]


def test_frames_per_clip_captions_stored_embedded_and_in_the_graph(cut_video, memory):
    model = RecordingModel(captioner(), name="fake-captioner")
    stage = make_stage("captions", model=model, memory=memory, clip_s=3.0, frames=3, max_pixels=160 * 120)
    assert "model=fake-captioner" in stage.version and "clip=3" in stage.version
    (report,) = VideoIndex(Video(cut_video), memory).build([stage])
    assert report.status == "built" and report.entries == 12  # six 4 s shots, two 2 s clips each
    assert len(model.calls) == 12
    spans = []
    for call in model.calls:
        span, times = clip_of(call.messages)
        assert len(times) == 3 and all(span.start <= t < span.end for t in times), (span, times)
        assert call.options["max_new_tokens"] == stage.max_tokens
        spans.append((round(span.start, 1), round(span.end, 1)))
    expected = sorted((float(s + h), float(s + h + 2)) for s in SHOT_STARTS for h in (0, 2))
    assert sorted(spans) == expected
    video = Video(cut_video)
    captions = memory.store.query(video.id, kind="caption")
    assert [(round(e.span.start, 1), round(e.span.end, 1)) for e in captions] == expected
    assert all(e.source == "index:captions" and len(e.data["frames"]) == 3 for e in captions)
    assert captions[5].text == "A red ball rolls past a tall man at second 10."
    # embedded as they were stored: nothing pending, and found by meaning
    pending = {i for i, _ in memory.store.pending_embeddings(memory.encoder.name, limit=100)}
    assert len(pending) == 5 and not pending & {e.id for e in captions}  # only the shot cuts wait
    hits = memory.search("a ball rolling by a man", video_id=video.id, kind="caption", k=3)
    assert len(hits) == 3 and hits[0].score > 0.5
    # the cost is in the report and the stage's info, also per video hour (24 s of video)
    assert report.info["model_calls"] == 12 and report.info["clips"] == 12
    assert report.info["input_tokens"] == 600 and report.info["output_tokens"] == 144
    assert report.info["per_video_hour"]["model_calls"] == pytest.approx(12 * 3600 / 24, rel=0.01)
    assert VideoIndex(video, memory).state("captions")["info"]["chunks"]["model_calls"] == 12
    # the entities joined the event graph, one event per caption
    events = memory.graph.query("red ball", video_id=video.id)
    assert len(events) == 12 and events[0].entities == ["red ball", "tall man"]
    assert len(memory.graph.query("tall man", "before", time=4.0, video_id=video.id)) == 2
    # built once: a second build reuses it, with its cost
    (again,) = VideoIndex(video, memory).build([stage])
    assert again.status == "reused" and again.info["model_calls"] == 12 and len(model.calls) == 12
    # another caption model is another version: rebuilt, the old captions and their events gone
    other = make_stage("captions", model=RecordingModel(captioner(), name="other"), memory=memory, clip_s=12.0)
    (rebuilt,) = VideoIndex(video, memory).build([other])
    assert rebuilt.status == "built" and rebuilt.entries == 6
    assert len(memory.graph.query("red ball", video_id=video.id)) == 6


def test_a_failing_clip_is_counted_and_the_rest_are_stored(cut_video, memory):
    stage = make_stage("captions", model=RecordingModel(captioner(fail_at=9.0)), memory=memory, frames=2)
    (report,) = VideoIndex(Video(cut_video), memory).build([stage])
    assert report.status == "built" and report.entries == 5
    assert report.info["failed_clips"] == 1 and report.info["model_calls"] == 6
    (failed,) = report.info["failed"]
    assert failed[:2] == [8.0, 12.0] and "the captioner broke on this clip" in failed[2]
    starts = [round(e.span.start) for e in memory.store.query(kind="caption")]
    assert starts == [0, 4, 12, 16, 20]


def test_a_slow_clip_times_out_and_requests_run_in_parallel(cut_video, memory):
    in_flight, most = [0], [0]
    lock = threading.Lock()
    inner = captioner()
    release = threading.Event()  # the clip at 12 s answers only once the build has returned

    def reply(messages, tools=None, **options):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            span, _ = clip_of(messages)
            if span.start == 12:
                release.wait(120)
            else:
                time.sleep(0.3)
            return inner(messages, tools, **options)
        finally:
            with lock:
                in_flight[0] -= 1

    stage = make_stage("captions", model=RecordingModel(reply), memory=memory, frames=1, workers=4, timeout_s=1.5)
    try:
        (report,) = VideoIndex(Video(cut_video), memory).build([stage])
        assert in_flight[0] == 1  # the build gave up on the slow clip instead of waiting for it
    finally:
        release.set()
    assert most[0] >= 4  # six clips, four requests in flight at once
    assert report.entries == 5 and report.info["failed_clips"] == 1
    assert report.info["failed"][0][:2] == [12.0, 16.0] and "no caption within 1.5 s" in report.info["failed"][0][2]


def test_a_chunk_where_every_clip_fails_fails_the_stage_for_a_retry(cut_video, memory):
    def broken(messages, tools=None, **options):
        raise ConnectionError("server down")

    stage = make_stage("captions", model=RecordingModel(broken, name="down"), memory=memory, frames=1)
    (report,) = VideoIndex(Video(cut_video), memory).build([stage])
    assert report.status == "failed" and "no clip of" in report.reason and "by down" in report.reason
    assert "server down" in report.reason
    fixed = make_stage("captions", model=RecordingModel(captioner(), name="down"), memory=memory, frames=1)
    (retried,) = VideoIndex(Video(cut_video), memory).build([fixed])
    assert retried.status == "built" and retried.entries == 6


@pytest.mark.slow
def test_killed_captioning_resumes_without_loss(cut_video, tmp_path):
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(
        worker("captions_build", cut_video, db, "0.3"), stdout=subprocess.PIPE, text=True, env=worker_env()
    )
    seen = 0
    for line in proc.stdout:
        if line.startswith("chunk"):
            seen += 1
        if seen == 3 and line.startswith("caption"):  # three chunks (12 s, six clips) committed, the fourth asked
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    vid = Video(cut_video).id
    store = MemoryStore(db)
    cursor, status = store.conn.execute(
        "SELECT cursor, status FROM stages WHERE video_id = ? AND stage = 'captions'", (vid,)
    ).fetchone()
    assert status == "running" and 12.0 <= cursor < 24.0
    committed = sorted(round(e.span.start) for e in store.query(vid, kind="caption"))
    assert committed == list(range(0, int(cursor), 2))  # every committed chunk whole, nothing half-written
    store.close()

    done = subprocess.run(
        worker("captions_build", cut_video, db, "0"), capture_output=True, text=True, timeout=120, env=worker_env()
    )
    assert done.returncode == 0, done.stderr
    report = next(line for line in done.stdout.splitlines() if line.startswith("report"))
    assert report.startswith("report resumed 12")
    asked = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("caption")]
    assert asked and all(TimeSpan.parse(a).start >= cursor for a in asked)  # went on from the cursor
    info = json.loads(report.split(" ", 3)[3])
    assert info["clips"] == 12 and info["model_calls"] >= 12  # counted across both runs
    final = Memory(db)
    assert sorted(round(e.span.start) for e in final.store.query(vid, kind="caption")) == list(range(0, 24, 2))
    assert len(final.graph.query("clip", video_id=vid)) == 12


def _cli(*args, cwd):
    return run_cli(*args, cwd=cwd, columns=200)


@pytest.mark.slow
def test_index_command_captions_with_a_named_model(cut_video, tmp_path):
    steps = [
        {"text": json.dumps({"caption": f"Scene {i}: a test pattern.", "entities": ["pattern"]})} for i in range(6)
    ]
    script = tmp_path / "captions.json"
    script.write_text(json.dumps({"steps": steps}))
    workspace = Memory(tmp_path / ".mcr" / "memory.db")
    known_shots(cut_video, workspace)
    workspace.close()
    built = _cli(
        "index", cut_video, "--stages", "captions", "--caption-model", f"replay:{script}", "--quiet", cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    assert "captions: built, 6 entries" in built.stdout
    assert "cost: 6 model calls" in built.stdout and "per video hour: 900 model calls" in built.stdout
    listed = _cli("memory", "list", "--kind", "caption", cwd=tmp_path)
    assert listed.stdout.count("test pattern") == 6 and "Scene 5" in listed.stdout
    again = _cli("index", cut_video, "--stages", "captions", "--model", f"replay:{script}", "--quiet", cwd=tmp_path)
    assert "captions: reused, 6 entries" in again.stdout
    unnamed = _cli("index", cut_video, "--stages", "shots,captions", "--quiet", cwd=tmp_path)
    assert "captions: reused, 6 entries" in unnamed.stdout  # no model named: the built captions stay
    unknown = _cli("index", cut_video, "--stages", "captions", "--caption-model", "nobody/no-such-vlm", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith("mcr-agent: error: model nobody/no-such-vlm is not available offline")
    run_db = Memory(tmp_path / "run.db")
    known_shots(cut_video, run_db)
    run_db.close()
    answer_script = tmp_path / "answer.json"
    answer_script.write_text(json.dumps({"steps": [{"answer": "a test pattern", "evidence": ["00:00-00:04"]}]}))
    ran = _cli(
        *("run", cut_video, "What is shown?", "--index", "captions", "--policy", "plain", "--quiet"),
        *("--model", f"replay:{answer_script}", "--caption-model", f"replay:{script}", "--memory", tmp_path / "run.db"),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "a test pattern"
    assert Memory(tmp_path / "run.db").store.count(kind="caption") == 6
    none = _cli("index", cut_video, "--stages", "captions", "--workspace", tmp_path / "other", cwd=tmp_path)
    assert none.returncode == 0 and "captions: skipped, 0 entries" in none.stdout
    assert "captions need a model" in none.stdout


def test_agent_captions_with_its_own_model_or_a_caption_model(cut_video, tmp_path):
    from mcr import Agent
    from mcr.run.events import IndexStage
    from mcr.run.overview import overview
    from mcr.run.testing import ScriptedModel, answer, say

    caption = json.dumps({"caption": "A grey test card fills the screen.", "entities": ["test card"]})
    own = ScriptedModel([say(caption)] * 6 + [answer("a test card", evidence=["00:00-00:04"])])
    for db in ("a.db", "b.db"):
        known = Memory(tmp_path / db)
        known_shots(cut_video, known)
        known.close()
    agent = Agent(own, memory=tmp_path / "a.db", index=("shots", "captions"), policy="plain", trace_dir=False)
    events = list(agent.stream(cut_video, "What is shown?"))
    stages = {e.stage: e for e in events if isinstance(e, IndexStage)}
    assert stages["captions"].status == "built" and stages["captions"].entries == 6
    assert stages["captions"].info["model_calls"] == 6 and "model_calls" not in stages["shots"].info
    assert sum(1 for c in own.calls if c.messages[0].text == CAPTION_SYSTEM) == 6
    own.assert_complete()
    # the overview quotes the captions
    video = Video(cut_video)
    text, _ = overview(video, video.span, 4, None, 160 * 120, agent.memory)
    assert (
        'Captions:\n<data source="caption" trust="untrusted">\n[00:00:00.0] A grey test card fills the screen.' in text
    )
    assert text.count("A grey test card") == 6

    captioner_model = RecordingModel(captioner(), name="captioner")
    runner = ScriptedModel([answer("a red ball", evidence=["00:00-00:04"])])
    agent = Agent(
        runner,
        memory=tmp_path / "b.db",
        index=("captions",),
        caption_model=captioner_model,
        policy="plain",
        trace_dir=False,
    )
    result = agent.run(cut_video, "What is shown?")
    assert result.answer == "a red ball" and len(captioner_model.calls) == 6
    assert all(c.messages[0].text != CAPTION_SYSTEM for c in runner.calls)


@pytest.mark.slow
def test_tiny_random_qwen3_vl_captions_each_clip_plumbing(code_video, tmp_path):
    pytest.importorskip("transformers")
    from tiny_models import make_qwen3_vl

    from mcr.models import load_model

    model = load_model(str(make_qwen3_vl(tmp_path / "qwen3-vl-tiny")))
    seen: list[dict] = []
    generate = model.model.generate

    def spy(**kwargs):
        seen.append({k: tuple(getattr(v, "shape", ())) for k, v in kwargs.items()})
        return generate(**kwargs)

    model.model.generate = spy
    memory = Memory(tmp_path / "m.db")

    class NoCuts(ShotStage):  # one shot, whatever the detector makes of the changing bars
        def run_chunk(self, video, span):
            return ChunkResult()

    VideoIndex(Video(code_video), memory).build([NoCuts()])
    stage = make_stage("captions", model=model, memory=memory, clip_s=5.0, frames=4, max_pixels=64 * 64, max_tokens=6)
    (report,) = VideoIndex(Video(code_video), memory).build([stage])
    assert len(seen) == 2  # the 10 s video has no cut: two 5 s clips, one request each
    for kwargs in seen:
        frames_in = kwargs.get("pixel_values_videos") or kwargs.get("pixel_values")
        assert frames_in and frames_in[0] > 0  # the clip's frames reached the model's generate
    assert report.info["model_calls"] == 2 and report.info["input_tokens"] > 0
    captions = memory.store.query(Video(code_video).id, kind="caption")
    assert report.entries == 2 and report.info["failed_clips"] == 0  # one caption per clip
    assert [(round(e.span.start), round(e.span.end)) for e in captions] == [(0, 5), (5, 10)]
    assert all(e.text.strip() and len(e.data["frames"]) == 4 for e in captions)
    memory.close()


@pytest.mark.slow
def test_real_clip_each_caption_request_holds_frames_of_one_shot(tmp_path):
    """megamind.mp4 (11.3 s), labelled by looking at its frames: four shots (woman at a table,
    man facing her, woman again, man close up), cut near 4.1, 6.6 and 8.4 s. Each shot is under
    10 s, so each is one clip, and the four frames sent for a clip all come from that shot."""
    import numpy as np
    from media import shared_clip

    video = Video(shared_clip("megamind.mp4"))
    memory = Memory(tmp_path / "m.db")
    sent = []

    def reply(messages, tools=None, **options):
        sent.append([p.frames for p in messages[-1].parts if isinstance(p, FramesPart)][0])
        return ModelOutput(json.dumps({"caption": "A scene of the film.", "entities": []}))

    stage = make_stage("captions", model=RecordingModel(reply), memory=memory, frames=4, max_pixels=160 * 90)
    (report,) = VideoIndex(video, memory).build([stage])
    clips = stage.clips(video)
    assert report.entries == len(clips) == len(sent) == 4
    for clip, expected in zip(clips, (4.1, 6.6, 8.4, 11.3)):
        assert abs(clip.end - expected) < 0.3, clips

    def grid(image):  # a 9x16 grid of grey block means
        grey = image.astype(np.float32).mean(axis=2)
        h, w = grey.shape
        return grey[: h // 9 * 9, : w // 16 * 16].reshape(9, h // 9, 16, w // 16).mean(axis=(1, 3))

    grids = [[grid(img) for img in f.images] for f in sent]
    within = max(float(np.abs(a - b).mean()) for g in grids for a, b in zip(g, g[1:]))
    between = min(float(np.abs(g[-1] - h[0]).mean()) for g, h in zip(grids, grids[1:]))
    assert 2 * within < between  # a clip's frames look alike; across a clip boundary (a cut) they do not
    memory.close()
