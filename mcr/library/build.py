"""``mcr-agent index`` over a library: many videos, a worker pool or a Ray cluster, one database.

Local workers are processes that each build one video's index at a time in the shared
memory database (SQLite in WAL mode, one builder per stage through the store's leases, each
chunk committed on its own), so a killed run resumes and finished videos are reused at once.
With Ray, a task builds a video's index in a scratch database on the node it lands on and
returns the stage results; the driver writes them into its own database, so SQLite is never
written from two machines. A video that fails is reported; the others go on.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mcr.errors import MCRError
from mcr.media.collection import VIDEO_EXTENSIONS, LibraryError, find_videos

__all__ = ["VIDEO_EXTENSIONS", "LibraryError", "VideoOutcome", "find_videos", "index_local", "index_one", "index_ray"]


@dataclass
class VideoOutcome:
    """What indexing one video of a library did."""

    path: str
    status: str  # indexed | reused | failed
    video_id: str = ""
    seconds: float = 0.0
    stages: list[dict] = field(default_factory=list)  # StageReport.to_dict() of each stage
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def index_one(path: str, db: str, stages: Sequence[str], progress: Any = None) -> VideoOutcome:
    """Build (or reuse) the index of one video in ``db``; never raises for a bad video."""
    from mcr.media.sources import open_video, with_subtitles
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.vectors import sync_store

    t0 = time.perf_counter()
    memory = None
    try:
        video = open_video(path, progress=False)
        memory = Memory(db)
        call = None if progress is None else (lambda stage, done, total: progress(path, stage, done, total))
        reports = VideoIndex(video, memory).build(with_subtitles(video, list(stages)), progress=call)
        memory.embed_pending()  # its text is searchable across the library at once
        sync_store(memory.store)  # and its vectors join the on-disk index now, not at the first search
    except MCRError as exc:
        return VideoOutcome(path, "failed", seconds=time.perf_counter() - t0, reason=exc.one_line())
    except Exception as exc:  # noqa: BLE001 - one video's failure is reported, the library goes on
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})"
        return VideoOutcome(
            path, "failed", seconds=time.perf_counter() - t0, reason=f"{type(exc).__name__}: {exc}{where}"
        )
    finally:
        if memory is not None:
            memory.close()
    done = [r.to_dict() for r in reports]
    failed = [r for r in reports if r.status == "failed"]
    status = (
        "failed" if failed else ("reused" if all(r.status in ("reused", "skipped") for r in reports) else "indexed")
    )
    reason = "; ".join(f"{r.stage}: {r.reason}" for r in failed) or "; ".join(
        f"{r.stage}: {r.reason}" for r in reports if r.reason
    )
    return VideoOutcome(path, status, video.id, time.perf_counter() - t0, done, reason)


def _worker(path: str, db: str, stages: Sequence[str], queue: Any) -> dict:
    def progress(video: str, stage: str, done: float, total: float) -> None:
        queue.put((video, stage, done, total))

    return index_one(path, db, stages, progress if queue is not None else None).to_dict()


def index_local(
    videos: Sequence[Path],
    db: Path,
    stages: Sequence[str],
    workers: int = 1,
    on_progress: Callable[[str, str, float, float], None] | None = None,
    on_done: Callable[[VideoOutcome], None] | None = None,
) -> list[VideoOutcome]:
    """Index ``videos`` into ``db`` with ``workers`` processes (1: in this process)."""
    if workers <= 1:
        outcomes = []
        for v in videos:
            outcomes.append(index_one(str(v), str(db), stages, on_progress))
            if on_done:
                on_done(outcomes[-1])
        return outcomes
    import multiprocessing
    import queue as queues
    import threading
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked model threads
    with context.Manager() as manager:
        updates = manager.Queue()
        stop = threading.Event()

        def pump() -> None:
            while not stop.is_set():
                try:
                    item = updates.get(timeout=0.1)
                except queues.Empty:
                    continue
                if on_progress is not None:
                    on_progress(*item)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        by_path: dict[str, VideoOutcome] = {}
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(_worker, str(v), str(db), list(stages), updates): str(v) for v in videos}
                for future in as_completed(futures):
                    try:
                        outcome = VideoOutcome(**future.result())
                    except Exception as exc:  # noqa: BLE001 - a worker that died: that video failed
                        outcome = VideoOutcome(futures[future], "failed", reason=f"the worker stopped: {exc}")
                    by_path[outcome.path] = outcome
                    if on_done:
                        on_done(outcome)
        finally:
            stop.set()
            reader.join(timeout=2)
    return [by_path[str(v)] for v in videos]


def _remote_build(path: str, stages: Sequence[str]) -> dict:
    """On a Ray node: the video's index built in a scratch database, returned as rows."""
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.transfer import export_stage

    with tempfile.TemporaryDirectory(prefix="mcr-index-") as scratch:
        db = str(Path(scratch) / "memory.db")
        outcome = index_one(path, db, stages)
        if outcome.status == "failed" and not outcome.video_id:
            return {"outcome": outcome.to_dict(), "stages": []}
        from mcr.media.sources import open_video

        memory = Memory(db)
        index = VideoIndex(open_video(path, progress=False), memory)
        built = [export_stage(index, s) for s in stages]
        memory.close()
    return {"outcome": outcome.to_dict(), "stages": [b for b in built if b is not None]}


def index_ray(
    videos: Sequence[Path],
    db: Path,
    stages: Sequence[str],
    address: str,
    num_cpus: int | None = None,
    on_done: Callable[[VideoOutcome], None] | None = None,
) -> list[VideoOutcome]:
    """Index ``videos`` as Ray tasks (one per video still to build); this process writes ``db``."""
    from mcr.eval.ray_runner import connect
    from mcr.media.sources import open_video
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.index import make_stage
    from mcr.memory.transfer import adopt_stage
    from mcr.memory.vectors import sync_store

    started = connect(address, num_cpus=num_cpus)  # says what to install when Ray is missing
    import ray

    memory = Memory(db)
    by_path: dict[str, VideoOutcome] = {}
    try:
        task = ray.remote(_remote_build)
        pending = {}
        for v in videos:
            try:
                video = open_video(v, progress=False)
            except MCRError as exc:
                by_path[str(v)] = VideoOutcome(str(v), "failed", reason=exc.one_line())
            else:
                index = VideoIndex(video, memory)
                if all(index.is_built(s, make_stage(s).version) for s in stages):
                    by_path[str(v)] = VideoOutcome(str(v), "reused", video.id)
            if str(v) in by_path:
                if on_done:
                    on_done(by_path[str(v)])
                continue
            pending[task.remote(str(v), list(stages))] = (str(v), video)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            path, video = pending.pop(ready[0])
            t0 = time.perf_counter()
            try:
                got = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a task that failed on its node: that video failed
                outcome = VideoOutcome(path, "failed", video.id, reason=f"the Ray task failed: {exc}")
            else:
                outcome = VideoOutcome(**got["outcome"])
                index = VideoIndex(video, memory)
                index.store.remember_video(video.id, str(video.path), video.info())
                for built in got["stages"]:
                    adopt_stage(index, built)
                sync_store(memory.store)
                outcome.seconds += time.perf_counter() - t0
            by_path[path] = outcome
            if on_done:
                on_done(outcome)
    finally:
        memory.close()
        if started:
            ray.shutdown()
    return [by_path[str(v)] for v in videos]
