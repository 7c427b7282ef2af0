"""The service's library: ``GET /v1/library/search`` over test-made videos (speech by espeak-ng,
drawn text) indexed by ``mcr-agent index``, each question answered in one video only; and what
it answers to hostile input (traversal, paths outside the roots, huge ``k``, blank or junk text,
nothing indexed): a 4xx naming the problem, never a 5xx."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from libraries import index_library, make_library
from served import Served, sse

from mcr.media.video import Video
from mcr.run.testing import RecordingModel, answer, tool_call, verdict
from mcr.service import library_routes, run_routes
from mcr.service.app import make_app

TALKS = ("physics", "kitchen", "garden")  # each query below is answered in one of them only


def instant():
    return RecordingModel(lambda messages, tools, **o: answer("nothing", evidence=["0-1"]), name="instant")


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_video):
    """A media root with ``talks/`` (three indexed videos) and ``new/fresh.mp4`` (not indexed),
    the memory database the index was built in, and a file outside the root."""
    work = tmp_path_factory.mktemp("served_library")
    talks, db = make_library(work / "media" / "talks", TALKS), work / "memory.db"
    index_library(talks, db, timeout=900)
    (work / "media" / "new").mkdir()
    shutil.copy(tiny_video, work / "media" / "new" / "fresh.mp4")
    (work / "media" / "empty").mkdir()
    shutil.copy(tiny_video, work / "outside.mp4")
    return work / "media", db


@pytest.fixture(scope="module")
def client(library):
    root, db = library
    app = make_app(instant(), [root], db, trace_dir=False)
    with Served(app) as client:
        yield client


def _overlaps(span, want) -> bool:
    return span[0] <= want[1] and span[1] >= want[0]


@pytest.mark.slow
def test_the_library_search_puts_the_right_video_and_span_first(library, client):
    root, _ = library
    for query, name, want in [
        ("Fourier transform", "physics", (1.0, 5.0)),
        ("basil pesto", "kitchen", (9.0, 15.0)),
        ("tomato seedlings", "garden", (1.0, 5.0)),
    ]:
        r = client.get("/v1/library/search", params={"q": query, "k": 3})
        assert r.status_code == 200, r.text
        found = r.json()
        top = found["results"][0]
        assert top["video"] == f"talks/{name}.mp4", (query, found["results"])
        assert top["video_id"] == Video(root / top["video"]).id
        assert _overlaps(top["span"], want) and not top["weak"] and top["shares"], (query, top)
        assert found["videos"] == found["searched"] == 3 and len(found["results"]) <= 3
        assert str(root) not in r.text  # paths relative to the media root only

    named = client.get(
        "/v1/library/search",
        params={"q": "compost bins", "videos": ["talks/kitchen.mp4", str(root / "talks" / "garden.mp4")]},
    ).json()
    assert named["videos"] == 2 and {h["video"] for h in named["results"]} <= {"talks/kitchen.mp4", "talks/garden.mp4"}
    assert named["results"][0]["video"] == "talks/garden.mp4"

    whole = client.get("/v1/library/search", params={"q": "melt the chocolate", "videos": ["talks", "new"]})
    assert whole.status_code == 200, whole.text
    assert whole.json()["results"][0]["video"] == "talks/kitchen.mp4"
    assert whole.json()["not_indexed"] == ["new/fresh.mp4"] and str(root) not in whole.text


@pytest.mark.slow
def test_hostile_library_searches_get_a_clear_4xx(library, client, monkeypatch):
    root, _ = library
    os.symlink(root.parent / "outside.mp4", root / "escape.mp4")
    cases = [
        ({"q": "frost", "videos": "../outside.mp4"}, 403, "'..'"),
        ({"q": "frost", "videos": "talks/../../outside.mp4"}, 403, "'..'"),
        ({"q": "frost", "videos": str(root.parent / "outside.mp4")}, 403, "outside the media roots"),
        ({"q": "frost", "videos": "/etc/passwd"}, 403, "outside the media roots"),
        ({"q": "frost", "videos": "escape.mp4"}, 403, "outside the media roots"),
        ({"q": "frost", "videos": "talks/missing.mp4"}, 403, "not a file under the media roots"),
        ({"q": "frost", "videos": "talks/\0.mp4"}, 403, "NUL byte"),
        ({"q": "frost", "videos": "empty"}, 400, "holds no video files"),
        ({"q": "frost", "videos": "new/fresh.mp4"}, 404, "none of the 1 videos named is indexed"),
        ({"q": "frost", "k": 21}, 422, '"k"'),
        ({"q": "frost", "k": 10**30}, 422, '"k"'),
        ({"q": "frost", "k": "many"}, 422, '"k"'),
        ({"q": "frost", "k": 0}, 422, '"k"'),
        ({"q": ""}, 422, '"q"'),
        ({"q": " \t "}, 422, "q is blank"),
        ({"q": "x" * 501}, 422, '"q"'),
        ({}, 422, '"q"'),
        ({"q": "frost", "videos": ["talks"] * 21}, 422, '"videos"'),
        ({"q": "frost", "videos": "v" * 3000}, 422, '"videos"'),
    ]
    for params, code, words in cases:
        r = client.get("/v1/library/search", params=params)
        assert r.status_code == code and words in r.text, (params, r.status_code, r.text)
        assert str(root) not in r.text or str(root) in str(params), (params, r.text)

    raw = client.get("/v1/library/search?q=%ff%fe%00&videos=%c0%ae%c0%ae/outside.mp4")  # bytes that are not UTF-8
    assert 400 <= raw.status_code < 500, raw.text
    junk = client.get("/v1/library/search", params={"q": "\u202e\U0001f600 ∑ 漢字 \ufeff", "k": 20})
    assert junk.status_code == 200 and all(h["video"].startswith("talks/") for h in junk.json()["results"])

    monkeypatch.setattr(library_routes, "MAX_VIDEOS", 2)
    many = client.get("/v1/library/search", params={"q": "frost", "videos": "talks"})
    assert many.status_code == 400 and "more than 2 videos" in many.text
    every = client.get("/v1/library/search", params={"q": "frost"})
    assert every.status_code == 400 and "name the ones to search with videos=" in every.text


def test_a_library_with_nothing_indexed_or_no_roots_says_so(media, tmp_path):
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        r = client.get("/v1/library/search", params={"q": "boats"})
        assert r.status_code == 404 and "no video under the media roots is indexed" in r.json()["detail"]
        named = client.get("/v1/library/search", params={"q": "boats", "videos": "boats.mp4"})
        assert named.status_code == 404 and "POST /v1/videos" in named.json()["detail"]
        assert client.get("/v1/library/search", params={"q": "boats", "videos": ".."}).status_code == 403
        assert str(media) not in r.text + named.text
        long = ["\U00010000" * 200] * 20  # 48 KB of request line, past uvicorn's default of 16 KiB
        assert client.get("/v1/library/search", params={"q": "boats", "videos": long}).status_code == 403
    with Served(make_app(instant(), [], tmp_path / "m.db", trace_dir=False)) as client:
        r = client.get("/v1/library/search", params={"q": "boats"})
        assert r.status_code == 403 and "--media-root" in r.json()["detail"]
        assert client.get("/v1/library/search", params={"q": "boats", "videos": "a.mp4"}).status_code == 403


def looks_at_physics(gate: threading.Event):
    """A model that searches the library, looks at what the search put first, and answers citing
    it; each turn waits for ``gate``."""

    def reply(messages, tools, **options):
        assert gate.wait(60)
        if tools == []:  # the check of a proposed answer
            return verdict("supported", 0.9, "the speech says it")
        done = sum(1 for m in messages if m.role == "tool")
        if done == 0:
            return tool_call("library_search", query="Fourier transform", k=3)
        if done == 1:
            return tool_call("inspect_frames", video="physics.mp4", span="00:00:01.0-00:00:05.0", max_frames=2)
        return answer(
            "The Fourier transform turns a signal into its frequencies.",
            evidence=[{"video": "physics.mp4", "span": "00:00:01.0-00:00:05.0"}],
        )

    return RecordingModel(reply, name="library")


@pytest.mark.slow
def test_a_run_over_a_folder_says_which_video_each_step_looked_at(library, tmp_path):
    root, db = library
    gate = threading.Event()
    gate.set()
    app = make_app(looks_at_physics(gate), [root], db, trace_dir=tmp_path / "traces")
    with Served(app) as client:
        ask = {"question": "What is said about the Fourier transform?", "policy": "plain", "max_steps": 6}
        r = client.post("/v1/runs", json={**ask, "videos": ["talks"]})  # a folder: its videos
        assert r.status_code == 202, r.text
        accepted = r.json()
        ids = {name: Video(root / "talks" / f"{name}.mp4").id for name in TALKS}
        assert accepted["video_id"] is None and sorted(accepted["video_ids"]) == sorted(ids.values())
        events = [e for _, e in sse(client, accepted["run_id"])]
        state = client.get(f"/v1/runs/{accepted['run_id']}").json()
        assert state["status"] == "finished", (state, events[-3:])
        assert state["result"]["evidence_videos"] == ["physics.mp4"]
        looked = [e for e in events if e["event"] == "tool_returned" and e["name"] == "inspect_frames"]
        assert looked and looked[0]["metadata"]["video"] == "physics.mp4"
        search = next(e for e in events if e["event"] == "tool_returned" and e["name"] == "library_search")
        assert search["metadata"]["results"][0]["video_id"] == ids["physics"]
        report = client.get(f"/v1/runs/{accepted['run_id']}/report")
        assert report.status_code == 200 and f'src="/v1/videos/{ids["physics"]}/file"' in report.text
        view = client.get(f"/v1/runs/{accepted['run_id']}/view")
        assert view.status_code == 200 and "/frame?t=" not in view.text  # its frames' videos are not known

        gate.clear()  # the next run waits at its first model call
        listed = client.post("/v1/runs", json={**ask, "videos": ["talks/kitchen.mp4", ids["garden"]]})
        assert listed.status_code == 202 and set(listed.json()["video_ids"]) == {ids["kitchen"], ids["garden"]}
        busy = client.delete(f"/v1/videos/{ids['kitchen']}")
        assert busy.status_code == 409 and listed.json()["run_id"] in busy.text  # a video the run may look at
        gate.set()
        finished = sse(client, listed.json()["run_id"])
        assert finished[-1][1]["event"] == "run_finished"
        assert client.delete(f"/v1/videos/{ids['kitchen']}").json()["removed"]


def test_runs_over_several_videos_refuse_what_they_must(media, tmp_path, code_video, monkeypatch):
    (media / "empty").mkdir()
    (media / "two").mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(code_video, media / "two" / name)
    shutil.copy(code_video, tmp_path / "outside.mp4")
    monkeypatch.setattr(run_routes, "MAX_LIBRARY", 1)
    ask = {"question": "What is on the water?", "policy": "plain"}
    app = make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)
    with Served(app) as client:
        for body, code, words in [
            ({**ask, "videos": ["../outside.mp4"]}, 403, "'..'"),
            ({**ask, "videos": ["boats.mp4", str(tmp_path / "outside.mp4")]}, 403, "outside the media roots"),
            ({**ask, "videos": ["missing.mp4"]}, 403, "not a file under the media roots"),
            ({**ask, "videos": ["empty"]}, 400, "holds no video files"),
            ({**ask, "videos": ["two"]}, 400, "more than 1 videos"),
            ({**ask, "videos": ["boats.mp4", "two/a.mp4"]}, 400, "more than 1 videos"),
            ({**ask, "videos": ["https://example.com/a.mp4"]}, 400, "POST /v1/videos"),
            ({**ask, "video": "boats.mp4", "videos": ["two"]}, 400, "give video"),
            (ask, 400, "give video"),
            ({**ask, "videos": []}, 422, '"videos"'),
            ({**ask, "videos": ["two"] * 21}, 422, '"videos"'),
            ({**ask, "videos": ["v" * 3000]}, 422, '"videos"'),
            ({**ask, "video": "two"}, 403, "ask its videos with videos"),
        ]:
            r = client.post("/v1/runs", json=body)
            assert r.status_code == code and words in r.text, (body, r.text)
    assert app.state.pool.runs == {}  # nothing refused was queued
