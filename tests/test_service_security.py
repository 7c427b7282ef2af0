"""The HTTP service held to a hostile probe: DNS rebinding (Host), cross-site requests (Origin,
content types), SSRF (private addresses, redirects), limits at the door, what it keeps in memory,
its index pool, ids that survive a restart, uploads that do not decode, and the small ones."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from served import VIDEO, Served, paced, sse

from mcr.media.download import SourceError, fetch, public_only
from mcr.run.testing import RecordingModel, answer
from mcr.service.app import make_app
from mcr.service.deps import NO_URL


def instant():
    return RecordingModel(lambda messages, tools, **o: answer("boats", evidence=["0-2"]), name="instant")


ASK = {"video": "boats.mp4", "question": "What is on the water?", "policy": "plain"}


def finished(client, run_id: str, timeout: float = 60) -> dict:
    t0 = time.monotonic()
    while (state := client.get(f"/v1/runs/{run_id}").json())["status"] not in ("finished", "error", "cancelled"):
        assert time.monotonic() - t0 < timeout, state
        time.sleep(0.05)
    return state


def test_a_host_not_allowed_is_answered_421(media, tmp_path):
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        assert client.get("/v1/media", headers={"Host": "evil.example"}).status_code == 421
        assert client.get("/", headers={"Host": "evil.example:8420"}).status_code == 421
        for host in ("localhost:8420", "127.0.0.1", "[::1]:8420", "LOCALHOST"):
            assert client.get("/v1/media", headers={"Host": host}).status_code == 200, host
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False, allowed_hosts=["mcr.lan"])) as client:
        assert client.get("/v1/media", headers={"Host": "mcr.lan:80"}).status_code == 200
        assert client.get("/v1/media", headers={"Host": "other.lan"}).status_code == 421


def test_a_page_of_another_site_changes_nothing(media, tmp_path, boats):
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        foreign = {"Origin": "http://evil.example"}
        assert client.post("/v1/runs", json=ASK, headers=foreign).status_code == 403
        assert client.post("/v1/runs", json=ASK, headers={"Origin": "null"}).status_code == 403
        assert client.delete("/v1/runs/x", headers=foreign).status_code == 403
        assert client.get("/v1/media", headers=foreign).status_code == 200  # reading is left to CORS
        own = {"Origin": str(client.base_url)}
        assert client.post("/v1/runs", json=ASK, headers=own).status_code == 202
        # a form can post text/plain across sites without a preflight: not taken as an upload
        form = client.post("/v1/videos/upload", content=boats.read_bytes(), headers={"Content-Type": "text/plain"})
        assert form.status_code == 415 and "video/" in form.json()["detail"]
        assert not list((tmp_path / "uploads").glob("*.video"))
        ok = client.post("/v1/videos/upload", content=boats.read_bytes(), headers={"Content-Type": "video/mp4"})
        assert ok.status_code == 201


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/hop"):  # a redirect to the file, as a public server could send
            self.send_response(302)
            self.send_header("Location", "/boats.mp4")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def file_server(boats, tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(boats, folder / "boats.mp4")
    (folder / "page.mp4").write_text("<html>not a video</html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Files, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_urls_to_private_addresses_are_refused_with_one_answer(media, tmp_path, file_server, monkeypatch):
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    urls = [
        f"{file_server}/boats.mp4",  # reachable and a video
        f"{file_server}/page.mp4",  # reachable, not a video
        f"{file_server}/nothing.mp4",  # 404
        f"http://127.0.0.1:{closed_port()}/x.mp4",  # refused
        "http://169.254.169.254/latest/meta-data/x.mp4",  # cloud metadata
        "http://10.0.0.1/x.mp4",
        "http://[::1]/x.mp4",
        "http://100.64.0.1/x.mp4",
        "http://0.0.0.0/x.mp4",
        "http://localhost/x.mp4",
    ]
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        answers = {(r.status_code, r.json()["detail"].split(": ", 1)[1]) for u in urls for r in [post_url(client, u)]}
        assert answers == {(400, NO_URL)}, answers  # the answers cannot tell the ports apart
    assert not (tmp_path / "cache" / "media").exists() or not list((tmp_path / "cache" / "media").glob("*.mp4"))
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False, allow_private_urls=True)) as client:
        assert post_url(client, f"{file_server}/hop").status_code == 201


def post_url(client, url: str):
    return client.post("/v1/videos", json={"url": url, "index": False})


def test_each_connection_of_a_download_is_checked_redirects_included(tmp_path, file_server, monkeypatch):
    """The address a name resolves to the second time, or a redirect's target, is checked where
    the connection lands: a download under public_only never reaches a private address."""
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    with public_only(), pytest.raises(SourceError, match="not a public one"):
        fetch(f"{file_server}/hop", progress=False)
    assert fetch(f"{file_server}/hop", progress=False).stat().st_size > 1000  # outside the block: fetched


def test_every_library_s_connections_are_checked_inside_public_only(file_server):
    """Page URLs go to yt-dlp, whose own networking (requests or urllib, its redirects) never
    passes through MCR's download code: inside public_only every socket's connect is checked at the
    address it goes to, so yt-dlp cannot reach a private address either, while outside the block
    the same connections are made."""
    import yt_dlp

    host, port = file_server.removeprefix("http://").split("/")[0].split(":")
    socket.create_connection((host, int(port))).close()
    with public_only():
        with pytest.raises(SourceError, match="not a public one"):
            socket.create_connection((host, int(port)))
        with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": _Quiet()}) as ydl:
            with pytest.raises(yt_dlp.utils.YoutubeDLError) as refused:
                ydl.extract_info(f"{file_server}/boats.mp4", download=False)
    causes = [refused.value, *getattr(refused.value, "unexpected_errors", [])]  # one per network library tried
    assert any(isinstance(c, SourceError) and "not a public one" in str(c) for c in causes), causes
    with socket.create_connection((host, int(port))):
        pass


class _Quiet:
    def debug(self, msg: str) -> None:
        pass

    warning = info = error = debug


@pytest.mark.parametrize(
    "body, field",
    [
        ({**ASK, "question": "x" * 4001}, "question"),
        ({**ASK, "options": [str(i) for i in range(11)]}, "options"),
        ({**ASK, "options": ["a", "b" * 301]}, "options"),
        ({**ASK, "max_steps": 0}, "max_steps"),
        ({**ASK, "max_steps": -3}, "max_steps"),
        ({**ASK, "max_steps": 101}, "max_steps"),
        ({**ASK, "policy": "anything"}, "policy"),
        ({**ASK, "video": "v" * 3000}, "video"),
    ],
)
def test_limits_at_the_door_name_the_field(media, tmp_path, body, field):
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        r = client.post("/v1/runs", json=body)
        assert r.status_code == 422 and field in [str(p) for d in r.json()["detail"] for p in d["loc"]], r.text


def test_search_and_event_limits(media, tmp_path):
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        video = client.post("/v1/videos", json={"path": "boats.mp4", "index": False}).json()["video_id"]
        for params in ({"q": "x" * 501}, {"q": "boats", "k": 0}, {"q": "boats", "k": 21}, {"q": ""}):
            assert client.get(f"/v1/videos/{video}/search", params=params).status_code == 422, params
        blank = client.get(f"/v1/videos/{video}/search", params={"q": "   "})
        assert blank.status_code == 422 and "retry:" not in blank.text
        assert client.post("/v1/videos", json={"url": "u" * 3000}).status_code == 422
        run_id = client.post("/v1/runs", json=ASK).json()["run_id"]
        finished(client, run_id)
        negative = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "-1"})
        assert negative.status_code == 422 and "data:" not in negative.text  # nothing replayed
        assert client.get(f"/v1/runs/{run_id}/events", params={"after": -5}).status_code == 422
        assert client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"}).status_code == 422


def test_runs_kept_in_memory_are_bounded_and_older_ones_read_from_their_traces(media, tmp_path):
    app = make_app(paced(0.0), [media], tmp_path / "m.db", trace_dir=tmp_path / "traces", keep_runs=2)
    with Served(app) as client:
        first = client.post("/v1/runs", json=ASK).json()["run_id"]
        state = finished(client, first)
        events = sse(client, first)
        assert len(events) == state["events"] > 5
        for _ in range(3):
            finished(client, client.post("/v1/runs", json=ASK).json()["run_id"])
        held = app.state.pool.runs[first]
        assert held.retired and held.events == []  # let go of
        again = client.get(f"/v1/runs/{first}").json()
        assert again["status"] == "finished" and again["events"] == len(events) and again["result"]["answer"] == "boats"
        assert sse(client, first) == events
        assert sse(client, first, last=3) == events[3:]
        assert sum(1 for r in app.state.pool.runs.values() if not r.retired) == 2
        assert client.get(f"/v1/runs/{first}/report").status_code == 200


@pytest.mark.slow
def test_index_jobs_have_their_own_pool_and_stop_when_cancelled(media, tmp_path, cue_video, code_video):
    shutil.copy(cue_video, media / "cues.mp4")
    shutil.copy(code_video, media / "code.mp4")
    app = make_app(paced(0.0), [media], tmp_path / "m.db", trace_dir=False, workers=1, queue_limit=0, index_queue=0)
    with Served(app) as client:
        job = client.post("/v1/videos", json={"path": "cues.mp4"}).json()["index_job"]
        other = client.post("/v1/videos", json={"path": "code.mp4"})
        assert other.status_code == 429 and "index jobs" in other.json()["detail"]
        assert client.post("/v1/runs", json=ASK).status_code == 202  # index jobs are not runs
        sse(client, "", path=f"/v1/videos/{job.removeprefix('index-')}/events", stop_after=1)
        assert client.delete(f"/v1/runs/{job}").json()["status"] == "cancelling"
        t0 = time.monotonic()
        while client.get(f"/v1/runs/{job}").json()["status"] != "cancelled":
            assert time.monotonic() - t0 < 60, client.get(f"/v1/runs/{job}").json()
            time.sleep(0.1)
        time.sleep(1.0)  # had it gone on, its stages would be done by now or soon
        stages = client.get(f"/v1/videos/{job.removeprefix('index-')}").json()["index"]
        assert stages.get("transcript") != "done" or stages.get("ocr") != "done", stages
        threads = [t.name for t in threading.enumerate() if t.name.startswith(("mcr-index", "index-beside"))]
        assert all(not t.startswith("index-beside") for t in threads)
        assert client.post("/v1/videos", json={"path": "code.mp4"}).status_code == 201  # room again


def test_video_ids_and_uploads_survive_a_restart(media, tmp_path, code_video):
    db = tmp_path / "m.db"
    with Served(make_app(instant(), [media], db, trace_dir=False)) as client:
        added = client.post("/v1/videos", json={"path": "boats.mp4", "index": False}).json()["video_id"]
        uploaded = client.post("/v1/videos/upload", content=code_video.read_bytes(), headers=VIDEO).json()["video_id"]
    (tmp_path / "uploads" / "stray.part").write_bytes(b"left by a stop")
    with Served(make_app(instant(), [media], db, trace_dir=False)) as client:
        assert not (tmp_path / "uploads" / "stray.part").exists()  # no record names it: swept at start
        for video in (added, uploaded):
            r = client.post("/v1/runs", json={"video": video, "question": "What?", "policy": "plain"})
            assert r.status_code == 202, r.text
            assert finished(client, r.json()["run_id"])["status"] == "finished"
        assert client.get(f"/v1/videos/{uploaded}/file").content == code_video.read_bytes()
        assert client.delete(f"/v1/videos/{uploaded}").json()["removed"] is True
        assert not list((tmp_path / "uploads").iterdir())  # the upload's file goes with its record
        assert client.get(f"/v1/videos/{uploaded}").status_code == 404


def test_an_upload_that_does_not_decode_whole_is_refused(media, tmp_path, code_video):
    whole = tmp_path / "front.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(code_video), "-c", "copy", "-movflags", "+faststart", str(whole)],
        check=True,
    )
    data = whole.read_bytes()
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        cut = client.post("/v1/videos/upload", content=data[: len(data) // 2], headers=VIDEO)
        assert cut.status_code == 415 and "does not decode whole" in cut.json()["detail"], cut.text
        assert "\n" not in cut.json()["detail"]
        assert not list((tmp_path / "uploads").glob("*.video"))


def test_small_ones(media, tmp_path):
    (media / "clips").mkdir()
    script = tmp_path / "script.json"
    verdict = {"text": json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "seen"})}
    script.write_text(json.dumps({"steps": [{"answer": "boats", "evidence": ["0-2"]}, verdict]}))
    from mcr.models.replay import ReplayModel

    app = make_app(ReplayModel.from_file(script), [media], tmp_path / "m.db", token="s3cret", trace_dir=False)
    with Served(app) as client:
        lower = {"Authorization": "bearer s3cret"}
        assert client.get("/v1/media", headers=lower).status_code == 200
        assert client.get("/v1/media", headers={"Authorization": "Basic s3cret"}).status_code == 401
        folder = client.post("/v1/runs", json={**ASK, "video": "clips"}, headers=lower)
        assert folder.status_code == 403 and "a folder, not a video" in folder.json()["detail"]
        ids = [client.post("/v1/runs", json=ASK, headers=lower).json()["run_id"] for _ in range(2)]
        for run_id in ids:  # each run replays the script from its first step
            t0 = time.monotonic()
            while (state := client.get(f"/v1/runs/{run_id}", headers=lower).json())["status"] not in ("finished",):
                assert state["status"] != "error" and time.monotonic() - t0 < 60, state
                time.sleep(0.05)
            assert state["result"]["answer"] == "boats"


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cli = subprocess.run(
            [sys.executable, "-m", "mcr.cli.main", "serve", "--port", str(port), "--model", "replay:none.json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "MCR_TOKEN"},
        )
    assert cli.returncode != 0 and "serving on" not in cli.stdout
    assert "in use" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1, cli.stderr


def test_a_name_no_file_can_have_is_a_refusal_not_a_server_error(media, tmp_path):
    """Found by the schema fuzz (test_service_fuzz.py): a 2,000-character video name was a 500
    (the file system's "File name too long" escaped)."""
    with Served(make_app(instant(), [media], tmp_path / "m.db", trace_dir=False)) as client:
        for name in ("0" * 2000, "a\x00b.mp4", "x/" * 1000):
            r = client.post("/v1/runs", json={**ASK, "video": name})
            assert r.status_code == 403 and "\n" not in r.json()["detail"], (name[:20], r.text[:200])
            assert len(r.json()["detail"]) < 300
