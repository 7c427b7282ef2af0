"""A real uvicorn serving the service on 127.0.0.1 in a thread, and what the service tests share:
a paced scripted model and a reader of a run's Server-Sent Events."""

from __future__ import annotations

import json
import threading
import time

import httpx
import uvicorn

from mcr.run.testing import RecordingModel, answer, tool_call, verdict
from mcr.service.app import MAX_REQUEST_HEAD

VIDEO = {"Content-Type": "video/mp4"}


def paced(delay: float = 0.2, calls: int = 1, evidence: str = "0-2"):
    """A model that looks ``calls`` times (inspect_frames) and then answers, ``delay`` s a turn."""

    def reply(messages, tools, **options):
        time.sleep(delay)
        if tools == []:  # the check of a proposed answer
            return verdict("supported", 0.9, "the frames show it")
        looked = sum(1 for m in messages if m.role == "tool")
        if looked < calls:
            return tool_call("inspect_frames", span=f"00:00:0{looked}-00:00:0{looked + 2}", max_frames=2)
        return answer("boats", evidence=[evidence])

    return RecordingModel(reply, name="paced")


class Served:
    """uvicorn serving ``app`` on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", h11_max_incomplete_event_size=MAX_REQUEST_HEAD
        )  # as `mcr-agent serve` configures it
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            assert time.monotonic() - t0 < 30, "the server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)


def sse(
    client: httpx.Client, run_id: str, last: int | None = None, stop_after: int | None = None, path: str = ""
) -> list[tuple]:
    """``(id, event)`` pairs read from the run's event stream (or the one at ``path``)."""
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    got = []
    with client.stream("GET", path or f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        n = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                n = int(line[4:])
            elif line.startswith("data: "):
                got.append((n, json.loads(line[6:])))
                if stop_after is not None and len(got) >= stop_after:
                    break
    return got
