"""The ``captions`` stage against a real ``transformers serve`` on 127.0.0.1: a tiny random
Qwen3-VL steered to one caption (so its reply is known; the model still runs on the frames),
with several caption requests in flight at once. Plumbing, not quality."""

from __future__ import annotations

import json
import threading

import pytest
from media import make_cut_video
from procs import transformers_serve

pytestmark = pytest.mark.slow

pytest.importorskip("openai")

CAPTION = {"caption": "A test card fills the screen.", "entities": ["test card"]}


@pytest.fixture(scope="module")
def caption_server(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from tiny_models import make_qwen3_vl, steer_to_reply

    root = tmp_path_factory.mktemp("caption-server")
    folder = make_qwen3_vl(root / "captioner")
    steer_to_reply(folder, json.dumps(CAPTION))
    with transformers_serve(root) as url:
        yield {"url": url + "/v1", "model": str(folder)}


def test_captions_over_transformers_serve_with_four_requests_in_flight(caption_server, tmp_path):
    from mcr.media.video import Video
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.index import make_stage
    from mcr.models.openai_server import OpenAIServerModel

    video = Video(make_cut_video(tmp_path / "cuts.mp4", cuts=3, shot_seconds=4.0))
    model = OpenAIServerModel(caption_server["url"], caption_server["model"], timeout=120)
    create = model.client.chat.completions.create
    in_flight, most, sent = [0], [0], []
    lock = threading.Lock()
    first_four = threading.Barrier(4, timeout=120)  # broken, failing their clips, unless four are in flight at once

    def spy(**request):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            sent.append(request)
            waits = len(sent) <= 4
        try:
            if waits:
                first_four.wait()
            return create(**request)
        finally:
            with lock:
                in_flight[0] -= 1

    model.client.chat.completions.create = spy
    memory = Memory(tmp_path / "m.db")
    stage = make_stage("captions", model=model, memory=memory, clip_s=2.0, frames=2, max_pixels=64 * 64)
    (report,) = VideoIndex(video, memory).build([stage])
    assert report.status == "built", report.reason
    n = len(stage.clips(video))
    assert n >= 8 and len(sent) == n and report.info["model_calls"] == n
    assert most[0] >= 4  # a server gets four requests at once by default
    for request in sent:  # each request carries its clip's two frames as timestamped images
        parts = request["messages"][-1]["content"]
        assert sum(1 for p in parts if p.get("type") == "image_url") == 2
    captions = memory.store.query(video.id, kind="caption")
    assert len(captions) == n and {e.text for e in captions} == {CAPTION["caption"]}
    assert report.info["input_tokens"] > 0 and report.info["output_tokens"] > 0
    assert len(memory.graph.query("test card", video_id=video.id)) == n
    memory.close()
