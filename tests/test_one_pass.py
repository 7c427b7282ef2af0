"""One decode per chunk for every frame stage: the same frames, the same index, and a kill -9
in the middle of a one-pass build resumes to the same index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import worker
from workers.one_pass_build import CHUNK_S, stages

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.tools import frame_pass
from mcr.tools.sampling import Request, sample_times, stream_frames, stream_many
from mcr.types import TimeSpan

pytest.importorskip("open_clip")
pytest.importorskip("rapidocr_onnxruntime")


def index_of(db: Path, video: Video) -> dict:
    """Every stage's entries (kind, span, text, data) and arrays, as plain values."""
    memory = Memory(db, readonly=True)
    index = VideoIndex(video, memory)
    out = {}
    for name in ("shots", "ocr", "embeddings"):
        entries = [(e.kind, e.span.to_list(), e.text, json.dumps(e.data, sort_keys=True)) for e in index.entries(name)]
        arrays = [(k, a.tolist()) for k, a in index.arrays(name)]
        out[name] = (sorted(entries), arrays, index.state(name)["status"])
    memory.close()
    return out


@pytest.mark.slow
def test_one_pass_gives_each_request_the_frames_it_gets_alone(cue_video):
    video = Video(cue_video)
    span = TimeSpan(3.0, 40.0)
    requests = [
        Request(sample_times(span, 4.0), 96 * 72),
        Request(sample_times(span, 0.5), None),
        Request(sample_times(span, 1.0), 224 * 126),
    ]
    together: list[list] = [[] for _ in requests]
    decoded = 0
    for t, images in stream_many(video, requests):
        decoded += 1
        for i, image in images.items():
            together[i].append((t, image))
    for request, got in zip(requests, together):
        alone = list(stream_frames(video, request.times, request.max_pixels))
        assert [t for t, _ in got] == [t for t, _ in alone]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, alone))
    assert decoded == len(together[0])  # the 4 fps request holds the others' frames: none decoded twice


@pytest.mark.slow
def test_the_one_pass_index_equals_the_per_stage_index_and_decodes_each_chunk_once(
    cue_video, tiny_clip_dir, tmp_path, monkeypatch
):
    video = Video(cue_video)
    calls = []
    real = frame_pass.stream_many

    def counted(video, requests, *args, **kwargs):
        calls.append(len(requests))
        return real(video, requests, *args, **kwargs)

    monkeypatch.setattr(frame_pass, "stream_many", counted)
    chunks = int(np.ceil(video.duration / CHUNK_S))
    monkeypatch.setenv("MCR_INDEX_ONEPASS", "0")
    alone = VideoIndex(video, Memory(tmp_path / "alone.db")).build(stages(tiny_clip_dir))
    assert calls == [1] * (3 * chunks)  # each stage decodes each chunk by itself
    calls.clear()
    monkeypatch.delenv("MCR_INDEX_ONEPASS")
    together = VideoIndex(video, Memory(tmp_path / "together.db")).build(stages(tiny_clip_dir))
    assert calls == [3] * chunks  # one decode of each chunk for the three stages
    assert [r.status for r in alone] == [r.status for r in together] == ["built"] * 3
    for a, b in zip(alone, together):
        assert a.info["frames"] == b.info["frames"] > 0
    one, other = index_of(tmp_path / "alone.db", video), index_of(tmp_path / "together.db", video)
    assert one == other
    assert one["ocr"][0] and one["shots"][2] == "done" and len(one["embeddings"][1]) == chunks


@pytest.mark.slow
def test_kill_9_during_a_one_pass_build_then_resume_gives_the_same_index(cue_video, tiny_clip_dir, tmp_path):
    video = Video(cue_video)
    env = {k: v for k, v in os.environ.items() if k != "MCR_INDEX_ONEPASS"}

    def run(db: Path, kill_after: int | None = None) -> list[str]:
        proc = subprocess.Popen(
            worker("one_pass_build", cue_video, db, tiny_clip_dir, kill_after or 0),
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if kill_after is not None and sum(x.startswith("chunk") for x in lines) == kill_after:
                proc.send_signal(signal.SIGKILL)  # two chunks of the three stages committed, and one of the third
                break
        proc.wait(timeout=300)
        if kill_after is not None:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 0
        return lines

    run(tmp_path / "whole.db")
    killed = tmp_path / "killed.db"
    run(killed, kill_after=7)
    memory = Memory(killed, readonly=True)
    states = {n: VideoIndex(video, memory).state(n) for n in ("shots", "ocr", "embeddings")}
    memory.close()
    assert all(s["status"] == "running" for s in states.values())
    assert sorted(s["cursor"] for s in states.values()) == [2 * CHUNK_S, 2 * CHUNK_S, 3 * CHUNK_S]
    lines = run(killed)
    assert sorted(x for x in lines if x.startswith("report")) == [
        "report embeddings resumed",
        "report ocr resumed",
        "report shots resumed",
    ]
    assert index_of(killed, video) == index_of(tmp_path / "whole.db", video)


def test_the_build_caps_malloc_arenas_unless_the_user_did():
    code = "from mcr.malloc import limit_arenas; print(limit_arenas(), limit_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert capped.stdout.split() == ["True", "True"]
    theirs = subprocess.run(
        [sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"}, capture_output=True, text=True, check=True
    )
    assert theirs.stdout.split() == ["False", "False"]
