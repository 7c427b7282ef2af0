"""Runs of the HTTP service: a bounded pool of workers, each run's events kept in order for
listeners that come and go (Server-Sent Events resumed by event number), and cancellation at the
run's next step."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mcr.errors import MCRError


class QueueFull(MCRError):
    """Every worker is busy and the queue is full: try again later."""


@dataclass
class RunState:
    run_id: str
    question: str
    video: str
    video_id: str = ""
    status: str = "queued"  # queued | running | finished | cancelled | error
    events: list[dict] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def done(self) -> bool:
        return self.status in ("finished", "cancelled", "error")

    def add(self, event: dict) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def end(self, status: str, result: dict | None = None, error: str | None = None) -> None:
        with self.changed:
            self.status, self.result, self.error = status, result, error
            self.changed.notify_all()

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "question": self.question,
            "video": self.video,
            "events": len(self.events),
            "result": self.result,
            "error": self.error,
        }


class RunPool:
    """At most ``workers`` runs at once and ``queue_limit`` waiting; ``make_agent(request)`` makes
    each run's agent (its own context; the model and the memory are shared)."""

    def __init__(self, make_agent: Callable[[dict], Any], workers: int = 2, queue_limit: int = 8) -> None:
        self.make_agent = make_agent
        self.workers, self.queue_limit = workers, queue_limit
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcr-run")
        self.runs: dict[str, RunState] = {}
        self.lock = threading.Lock()

    def waiting(self) -> int:
        return sum(1 for r in self.runs.values() if not r.done)

    def submit(self, request: dict, video: Any) -> RunState:
        with self.lock:
            if self.waiting() >= self.workers + self.queue_limit:
                raise QueueFull(f"{self.workers} runs are going and {self.queue_limit} are waiting: try again later")
            state = RunState(uuid.uuid4().hex[:12], request["question"], str(request.get("video", "")), video.id)
            self.runs[state.run_id] = state
        self.pool.submit(self._run, state, request, video)
        return state

    def _run(self, state: RunState, request: dict, video: Any) -> None:
        if state.cancel.is_set():
            state.end("cancelled")
            return
        state.status = "running"
        try:
            agent = self.make_agent(request)
            agent.subscribers.append(lambda e: state.add(e.to_dict()) if e.kind != "model_delta" else None)
            stream = agent.stream(video, request["question"], request.get("options") or None, run_id=state.run_id)
            finished = None
            for event in stream:
                if event.kind == "run_finished" and event.depth == 0:
                    finished = event.result
                if state.cancel.is_set() and finished is None:
                    stream.close()  # the run ends at this step; its trace says "interrupted"
                    break
            if finished is None:
                state.end("cancelled")
            else:
                state.end("finished", finished.to_dict())
        except Exception as exc:  # noqa: BLE001 - a run that fails is reported on its own
            state.end("error", error=f"{type(exc).__name__}: {exc}")

    def index(self, video: Any, memory: Any, stages: list[str]) -> RunState:
        """Build (or reuse) ``video``'s index in a thread of its own; its progress goes out as
        events (``index_progress`` as chunks finish, ``index_stage`` for each stage's outcome) under
        the job id ``index-VIDEO_ID``. A job already going for that video is returned as it is."""
        job_id = f"index-{video.id}"
        with self.lock:
            state = self.runs.get(job_id)
            if state is not None and not state.done:
                return state
            state = RunState(job_id, "", str(video.path), video.id, status="running")
            self.runs[job_id] = state
        last: dict[str, float] = {}

        def progress(stage: str, done: float, total: float) -> None:
            if done - last.get(stage, -1e9) >= 1.0 or done >= total:  # at most one event a second of video
                last[stage] = done
                state.add({"event": "index_progress", "stage": stage, "done": round(done, 3), "total": total})

        def build() -> None:
            from mcr.memory import VideoIndex

            try:
                for report in VideoIndex(video, memory).build(stages, progress=progress):
                    state.add({"event": "index_stage", "video_id": video.id, **report.to_dict()})
                state.end(
                    "finished",
                    {"video_id": video.id, "stages": [e for e in state.events if e["event"] == "index_stage"]},
                )
            except Exception as exc:  # noqa: BLE001 - the job reports its failure
                state.end("error", error=f"{type(exc).__name__}: {exc}")

        threading.Thread(target=build, name=job_id, daemon=True).start()
        return state

    def cancel(self, run_id: str) -> RunState | None:
        state = self.runs.get(run_id)
        if state is not None:
            state.cancel.set()
        return state

    def events(self, run_id: str, after: int = 0, poll_s: float = 10.0) -> Iterator[tuple[int, dict | None]]:
        """``(number, event)`` from event ``after + 1`` on, as they come, until the run is over;
        ``(number, None)`` when nothing came for ``poll_s`` (a keep-alive)."""
        state = self.runs[run_id]
        n = after
        while True:
            with state.changed:
                if n >= len(state.events) and not state.done:
                    state.changed.wait(poll_s)
                fresh = state.events[n:]
                done = state.done
            if not fresh and not done:
                yield n, None
            for event in fresh:
                n += 1
                yield n, event
            if done and n >= len(state.events):
                return

    def close(self) -> None:
        for state in self.runs.values():
            state.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["QueueFull", "RunPool", "RunState"]
