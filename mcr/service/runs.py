"""Runs of the HTTP service: a bounded pool of workers, each run's events kept in order for
listeners that come and go (Server-Sent Events resumed by event number), and cancellation at the
run's next step. Only the last ``keep_runs`` finished runs keep their events in memory; an older
one's events are read back from its trace file, whose lines are the same events in the same order.
Index jobs have a bounded pool of their own and stop between chunks when cancelled."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mcr.errors import MCRError

KEEP_RUNS = 100


class QueueFull(MCRError):
    """Every worker is busy and the queue is full: try again later."""


class GoneEvents(MCRError):
    """A finished run whose events are no longer in memory and that wrote no trace."""


class Cancelled(Exception):
    """Raised from an index job's progress callback: the build stops after the chunk it committed."""


@dataclass
class RunState:
    run_id: str
    question: str
    video: str
    video_id: str = ""  # empty for a run over several videos
    video_ids: list[str] = field(default_factory=list)  # every video the run may look at
    status: str = "queued"  # queued | running | finished | cancelled | error
    events: list[dict] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    count: int = 0  # events once they are no longer held here
    trace: str | None = None  # where they are read from then
    retired: bool = False

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

    @property
    def event_count(self) -> int:
        return self.count if self.retired else len(self.events)

    def retire(self) -> None:
        """Let go of the events; they stay readable from the trace file, when there is one."""
        with self.changed:
            self.count, self.retired = len(self.events), True
            self.trace = (self.result or {}).get("trace_path") or self.trace
            self.events = []

    def saved_events(self, after: int) -> Iterator[tuple[int, dict]]:
        """Events ``after + 1`` on, read from the trace file of a retired run."""
        if not self.trace:
            raise GoneEvents(f"run {self.run_id}'s events are no longer kept and it wrote no trace")
        try:
            with open(self.trace, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if n > after and n <= self.count and line.strip():
                        yield n, json.loads(line)
        except (OSError, ValueError):
            raise GoneEvents(f"run {self.run_id}'s trace file {self.trace} cannot be read any more") from None

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "question": self.question,
            "video": self.video,
            "video_ids": self.video_ids,
            "events": self.event_count,
            "result": self.result,
            "error": self.error,
        }


class RunPool:
    """At most ``workers`` runs at once and ``queue_limit`` waiting; ``make_agent(request)`` makes
    each run's agent (its own context; the model and the memory are shared). Index jobs go to a
    pool of their own (``index_workers`` at once, ``index_queue`` waiting) and never count as runs."""

    def __init__(
        self,
        make_agent: Callable[[dict], Any],
        workers: int = 2,
        queue_limit: int = 8,
        keep_runs: int = KEEP_RUNS,
        index_workers: int = 1,
        index_queue: int = 2,
    ) -> None:
        self.make_agent = make_agent
        self.workers, self.queue_limit, self.keep_runs = workers, queue_limit, keep_runs
        self.index_workers, self.index_queue = index_workers, index_queue
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcr-run")
        self.index_pool = ThreadPoolExecutor(max_workers=index_workers, thread_name_prefix="mcr-index")
        self.runs: dict[str, RunState] = {}
        self.jobs: dict[str, RunState] = {}
        self.lock = threading.Lock()

    def get(self, run_id: str) -> RunState | None:
        return self.runs.get(run_id) or self.jobs.get(run_id)

    def waiting(self) -> int:
        return sum(1 for r in self.runs.values() if not r.done)

    def submit(self, request: dict, video: Any) -> RunState:
        """Queue a run over ``video``: one opened video, or a list of them (a library run)."""
        several = isinstance(video, list)
        named = ", ".join(request.get("videos") or []) if several else str(request.get("video", ""))
        with self.lock:
            if self.waiting() >= self.workers + self.queue_limit:
                raise QueueFull(f"{self.workers} runs are going and {self.queue_limit} are waiting: try again later")
            ids = [v.id for v in video] if several else [video.id]
            state = RunState(uuid.uuid4().hex[:12], request["question"], named, "" if several else video.id, ids)
            self.runs[state.run_id] = state
        self.pool.submit(self._run, state, request, video)
        return state

    def _run(self, state: RunState, request: dict, video: Any) -> None:
        try:
            self._go(state, request, video)
        finally:
            self._retire()

    def _go(self, state: RunState, request: dict, video: Any) -> None:
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
            state.trace = str(agent.last_trace) if getattr(agent, "last_trace", None) else None
            if finished is None:
                state.end("cancelled")
            else:
                state.end("finished", finished.to_dict())
        except Exception as exc:  # noqa: BLE001 - a run that fails is reported on its own
            state.end("error", error=f"{type(exc).__name__}: {exc}")

    def _retire(self) -> None:
        """Finished runs beyond the last ``keep_runs`` let go of their events; finished index jobs
        beyond them are forgotten (the video's index state says how they went)."""
        with self.lock:
            held = sorted((s for s in self.runs.values() if s.done and not s.retired), key=lambda s: s.created)
            for state in held[: max(0, len(held) - self.keep_runs)]:
                state.retire()
            jobs = sorted((s for s in self.jobs.values() if s.done), key=lambda s: s.created)
            for state in jobs[: max(0, len(jobs) - self.keep_runs)]:
                del self.jobs[state.run_id]

    def index(self, video: Any, memory: Any, stages: list[str]) -> RunState:
        """Build (or reuse) ``video``'s index in the index pool; its progress goes out as events
        (``index_progress`` as chunks finish, ``index_stage`` for each stage's outcome) under the job
        id ``index-VIDEO_ID``. A job already going for that video is returned as it is."""
        job_id = f"index-{video.id}"
        with self.lock:
            state = self.jobs.get(job_id)
            if state is not None and not state.done:
                return state
            if sum(1 for j in self.jobs.values() if not j.done) >= self.index_workers + self.index_queue:
                raise QueueFull(
                    f"{self.index_workers} index jobs are going and {self.index_queue} are waiting: "
                    "add the video again later (index=false adds it without building its index)"
                )
            state = RunState(job_id, "", str(video.path), video.id)
            self.jobs[job_id] = state
        self.index_pool.submit(self._index, state, video, memory, stages)
        return state

    def _index(self, state: RunState, video: Any, memory: Any, stages: list[str]) -> None:
        from mcr.memory import VideoIndex

        last: dict[str, float] = {}

        def progress(stage: str, done: float, total: float) -> None:
            if state.cancel.is_set():  # raised between chunks: what was committed stays, resumable
                raise Cancelled
            if done - last.get(stage, -1e9) >= 1.0 or done >= total:  # at most one event a second of video
                last[stage] = done
                state.add({"event": "index_progress", "stage": stage, "done": round(done, 3), "total": total})

        try:
            if state.cancel.is_set():
                raise Cancelled
            state.status = "running"
            for report in VideoIndex(video, memory).build(stages, progress=progress):
                state.add({"event": "index_stage", "video_id": video.id, **report.to_dict()})
            stages_done = [e for e in state.events if e["event"] == "index_stage"]
            state.end("finished", {"video_id": video.id, "stages": stages_done})
        except Cancelled:
            state.end("cancelled")
        except Exception as exc:  # noqa: BLE001 - the job reports its failure
            state.end("error", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._retire()

    def cancel(self, run_id: str) -> RunState | None:
        state = self.get(run_id)
        if state is not None:
            state.cancel.set()
        return state

    def events(self, run_id: str, after: int = 0, poll_s: float = 10.0) -> Iterator[tuple[int, dict | None]]:
        """``(number, event)`` from event ``after + 1`` on, as they come, until the run is over;
        ``(number, None)`` when nothing came for ``poll_s`` (a keep-alive)."""
        state = self.get(run_id)
        if state is None:
            return
        n = after
        while True:
            with state.changed:
                if state.retired:
                    break
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
        yield from state.saved_events(n)  # retired while a listener was reading: the rest from the trace

    def close(self) -> None:
        for state in [*self.runs.values(), *self.jobs.values()]:
            state.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.index_pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["Cancelled", "GoneEvents", "KEEP_RUNS", "QueueFull", "RunPool", "RunState"]
