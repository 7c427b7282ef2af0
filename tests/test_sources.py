"""Videos from URLs: plain downloads into the media cache (validators, ranges, a dropped
connection taken up again, clear failures) and pages read by yt-dlp, all on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from media_server import MediaServer, Served
from procs import worker

from mcr.media.download import SourceError, media_cache, parse_size
from mcr.media.sources import open_video, source_of
from mcr.media.video import Video

VTT = """WEBVTT

00:00:01.000 --> 00:00:02.500
Hello from the page

00:00:02.500 --> 00:00:02.510
Hello from the page

00:00:03.000 --> 00:00:04.200
Hello from the page
the boats are <c>leaving</c>
"""
PAGE = """<html><head><title>Boats at the harbour</title></head><body>
<video controls src="/media/clip.mp4"><track kind="subtitles" srclang="en" src="/media/clip.en.vtt"></video>
</body></html>"""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def clip(code_video):
    return code_video.read_bytes()


def test_a_url_is_downloaded_once_and_shares_the_index_of_a_local_copy(code_video, clip):
    files = {"/v/clip.mp4": Served(clip)}
    with MediaServer(files) as server:
        video = open_video(f"{server.url}/v/clip.mp4")
        assert video.id == Video(code_video).id  # identity is the content: one index for both
        assert video.path.parent == media_cache() and video.path.read_bytes() == clip
        assert video.source["url"] == f"{server.url}/v/clip.mp4" and video.info()["source"]["via"] == "http"
        assert server.sent["/v/clip.mp4"] == len(clip)

        again = open_video(f"{server.url}/v/clip.mp4")  # asked whether it changed: 304, nothing sent
        assert again.path == video.path and server.sent["/v/clip.mp4"] == len(clip)
        assert server.log[-1]["If-None-Match"] and server.log[-1]["status"] == 304

        files["/v/clip.mp4"] = Served(clip[:-1] + b"\0")  # a new version on the server: fetched again
        assert open_video(f"{server.url}/v/clip.mp4").path.read_bytes() == clip[:-1] + b"\0"
        assert server.sent["/v/clip.mp4"] == 2 * len(clip)
    files["/v/clip.mp4"] = Served(clip)
    offline = open_video(f"{server.url}/v/clip.mp4")  # the server gone: the kept copy serves
    assert offline.path.is_file() and len(offline.path.read_bytes()) == len(clip)
    assert not list(media_cache().glob("*.part"))


def test_a_server_without_ranges_or_validators(code_video, clip):
    with MediaServer({"/plain.mp4": Served(clip, ranges=False, validators=False)}) as server:
        assert open_video(f"{server.url}/plain.mp4").id == Video(code_video).id
        assert open_video(f"{server.url}/plain.mp4").id == Video(code_video).id  # kept: no validators to ask
        assert server.requests == ["GET /plain.mp4"]


def test_a_connection_dropped_half_way_is_taken_up_again(code_video, clip):
    half = len(clip) // 2
    with MediaServer({"/drop.mp4": Served(clip, drop_after=half)}) as server:
        video = open_video(f"{server.url}/drop.mp4", progress=False)
        assert video.id == Video(code_video).id
        first, second = server.log
        assert first["Range"] is None and second["Range"] == f"bytes={half}-" and second["status"] == 206
        assert second["If-Range"]  # a changed file would start over
        assert server.sent["/drop.mp4"] == len(clip)  # nothing sent twice

    # without ranges the second request starts over, and the file is still whole
    with MediaServer({"/drop.mp4": Served(clip, drop_after=half, ranges=False)}) as server:
        os.environ.pop("MCR_MAX_DOWNLOAD", None)
        for f in media_cache().glob("*"):
            f.unlink()
        assert open_video(f"{server.url}/drop.mp4", progress=False).id == Video(code_video).id
        assert server.log[1]["status"] == 200


def test_failures_are_one_line_naming_the_source(clip, tmp_path):
    files = {
        "/gone.mp4": Served(b"", status=404),
        "/secret.mp4": Served(b"", status=403),
        "/page.mp4": Served(b"<html>not a video</html>", content_type="text/html"),
        "/noise.mp4": Served(os.urandom(5000), content_type="application/octet-stream"),
        "/big.mp4": Served(clip),
    }
    with MediaServer(files) as server:
        cases = {
            "/gone.mp4": "HTTP 404, nothing is there",
            "/secret.mp4": "HTTP 403, access is forbidden",
            "/page.mp4": "is not a video file: the server sent text/html",
            "/noise.mp4": "did not give a playable video",
        }
        for path, words in cases.items():
            with pytest.raises(SourceError, match=words) as err:
                open_video(server.url + path, progress=False)
            assert server.url + path in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(SourceError, match="over the download limit of 1.0 KiB.*MCR_MAX_DOWNLOAD"):
            open_video(f"{server.url}/big.mp4", max_bytes=1024, progress=False)
    assert not [p for p in media_cache().iterdir() if p.suffix in (".mp4", ".part")]  # nothing bad was kept
    assert parse_size("8G") == 8 << 30 and parse_size("500M") == 500 << 20 and parse_size("1.5KiB") == 1536

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match=f"127.0.0.1:{port} cannot be reached"):
        open_video(f"http://127.0.0.1:{port}/clip.mp4")


def test_a_page_is_read_by_yt_dlp_with_its_subtitles(code_video, clip, tmp_path):
    from mcr.memory import Memory, VideoIndex

    files = {
        "/watch": Served(PAGE.encode(), content_type="text/html"),
        "/media/clip.mp4": Served(clip),
        "/media/clip.en.vtt": Served(VTT.encode(), content_type="text/vtt"),
    }
    with MediaServer(files) as server:
        video = open_video(f"{server.url}/watch", progress=False)
        assert video.id == Video(code_video).id
        assert video.source["via"] == "yt-dlp" and video.source["title"].startswith("Boats at the harbour")
        (sub,) = video.source["subtitles"]
        assert sub["lang"] == "en" and not sub["auto"]
        reused = len(server.requests)
        assert open_video(f"{server.url}/watch").id == video.id and len(server.requests) == reused

    memory = Memory(tmp_path / "m.db")
    reports = VideoIndex(video, memory).build(["subtitles"])
    assert [(r.stage, r.status, r.entries) for r in reports] == [("subtitles", "built", 2)]
    lines = VideoIndex(video, memory).entries("subtitles")
    assert [(e.text, e.span.start, e.span.end, e.kind, e.source) for e in lines] == [
        ("Hello from the page", 1.0, 2.5, "transcript", "index:subtitles"),
        ("the boats are leaving", 3.0, 4.2, "transcript", "index:subtitles"),  # the rolling repeat left out
    ]
    hits = memory.search("boats leaving", video_id=video.id, kind="transcript", k=1)
    assert hits and hits[0].entry.text == "the boats are leaving"
    local = Video(code_video)  # a local copy of the same bytes finds the page's subtitles
    assert source_of(local)["subtitles"][0]["lang"] == "en"


@pytest.mark.slow
def test_the_cli_indexes_a_page_and_a_youtube_url_without_network_fails_in_one_line(clip, cache, tmp_path):
    files = {
        "/watch": Served(PAGE.encode(), content_type="text/html"),
        "/media/clip.mp4": Served(clip),
        "/media/clip.en.vtt": Served(VTT.encode(), content_type="text/vtt"),
    }
    env = {**os.environ, "MCR_CACHE": str(cache)}
    with MediaServer(files) as server:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "mcr.cli.main",
                "index",
                f"{server.url}/watch",
                "--stages",
                "shots",
                "--memory",
                "m.db",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert out.returncode == 0, out.stderr
    assert "subtitles" in out.stdout and "shots" in out.stdout

    out = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "run", "https://www.youtube.com/watch?v=aqz-KE-bpKQ", "What?"],
        capture_output=True,
        text=True,
        env={**env, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"},
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "cannot open https://www.youtube.com/watch?v=aqz-KE-bpKQ" in line and "cannot be reached" in line


def test_an_agent_runs_on_a_page_url_and_sees_its_title_as_data(clip, tmp_path):
    from mcr import Agent
    from mcr.run.testing import ScriptedModel, answer
    from mcr.run.trace import read_trace

    files = {
        "/watch": Served(PAGE.encode(), content_type="text/html"),
        "/media/clip.mp4": Served(clip),
        "/media/clip.en.vtt": Served(VTT.encode(), content_type="text/vtt"),
    }
    model = ScriptedModel([answer("boats")])
    agent = Agent(model=model, policy="plain", memory=tmp_path / "m.db", trace_dir=tmp_path, index=("shots",))
    with MediaServer(files) as server:
        result = agent.run(f"{server.url}/watch", "What leaves the harbour?")
    assert result.answer == "boats"
    task = next(m.text for m in model.calls[0].messages if m.role == "user")
    assert f'<data source="video-name" trust="untrusted">\n{server.url}/watch\n</data>' in task
    assert '<data source="video-page" trust="untrusted">\ntitle: Boats at the harbour' in task
    started = read_trace(result.trace_path)[0]
    assert started.video["source"]["url"] == f"{server.url}/watch"
    stages = [e.stage for e in read_trace(result.trace_path) if e.kind == "index_stage"]
    assert stages == ["shots", "subtitles"]  # the page's subtitles join the index


def test_two_processes_fetching_one_url_download_it_once(code_video, clip, cache):
    with MediaServer({"/both.mp4": Served(clip)}) as server:
        procs = [
            subprocess.Popen(
                worker("open_url", f"{server.url}/both.mp4"),
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "MCR_CACHE": str(cache)},
            )
            for _ in range(2)
        ]
        paths = {p.communicate(timeout=120)[0].strip() for p in procs}
        assert all(p.returncode == 0 for p in procs)
        assert len(paths) == 1 and server.sent["/both.mp4"] == len(clip)  # the second waited, then asked: 304
