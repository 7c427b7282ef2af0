"""The ``captions`` stage against a real ``transformers serve`` on 127.0.0.1: a tiny random
Qwen3-VL steered to one caption (so its reply is known; the model still runs on the frames),
with several caption requests in flight at once. Plumbing, not quality."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from media import make_cut_video

pytest.importorskip("openai")

CAPTION = {"caption": "A test card fills the screen.", "entities": ["test card"]}


@pytest.fixture(scope="module")
def caption_server(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_backends_server import free_port
    from tiny_models import make_qwen3_vl, steer_to_reply

    root = tmp_path_factory.mktemp("caption-server")
    folder = make_qwen3_vl(root / "captioner")
    steer_to_reply(folder, json.dumps(CAPTION))
    (root / "hf" / "hub").mkdir(parents=True)
    port = free_port()
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"}
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen(
        [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("transformers serve did not start:\n" + (root / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"url": url + "/v1", "model": str(folder)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def test_captions_over_transformers_serve_with_four_requests_in_flight(caption_server, tmp_path):
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.index import make_stage
    from mcr.models.openai_server import OpenAIServerModel
    from mcr.video import Video

    video = Video(make_cut_video(tmp_path / "cuts.mp4", cuts=3, shot_seconds=4.0))
    model = OpenAIServerModel(caption_server["url"], caption_server["model"], timeout=120)
    create = model.client.chat.completions.create
    in_flight, most, sent = [0], [0], []
    lock = threading.Lock()

    def spy(**request):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            sent.append(request)
        try:
            time.sleep(0.2)  # let the pool fill before the first answer comes back
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
