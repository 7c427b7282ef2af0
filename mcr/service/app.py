"""``mcr-agent serve``: MCR as an HTTP service (FastAPI, OpenAPI docs at ``/docs``).

Runs go to a bounded pool (:mod:`mcr.service.runs`); their events stream as Server-Sent Events
numbered from 1, so a listener that reconnects with ``Last-Event-ID`` misses nothing and sees
nothing twice. Videos are files under the media roots (no ``..``, no symlink out of a root), URLs
(:mod:`mcr.media.sources`), or uploads (size-limited, and kept only when they open as a video). Bound to
127.0.0.1 by default; any other address needs a bearer token. No endpoint reads or writes a file
a request names outside the media roots. Only the allowed host names are answered (DNS rebinding),
a page of another origin changes nothing, and URLs are fetched from public addresses only
(:mod:`mcr.service.guard`, :func:`mcr.media.download.public_only`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Sequence

from mcr.errors import MCRError
from mcr.service.guard import allowed_hosts as allowed_hosts_of
from mcr.service.paths import media_path
from mcr.service.runs import KEEP_RUNS

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPLOAD_LIMIT = 2 << 30
# the longest request line and headers the server reads (uvicorn's own default is 16 KiB): a
# library search may name 20 files of up to 2,048 characters, percent-encoded at up to 12 bytes
# a character; a longer head is answered 400 and the connection closed
MAX_REQUEST_HEAD = 1 << 20


class ServiceError(MCRError):
    """The service cannot start as asked."""


def make_app(
    model: Any,
    media_roots: Sequence[str | os.PathLike] = (),
    memory: str | os.PathLike | None = None,
    token: str | None = None,
    workers: int = 2,
    queue_limit: int = 8,
    upload_limit: int = UPLOAD_LIMIT,
    trace_dir: str | os.PathLike | None = None,
    allowed_hosts: Sequence[str] = (),
    allow_private_urls: bool = False,
    keep_runs: int = KEEP_RUNS,
    index_workers: int = 1,
    index_queue: int = 2,
) -> Any:
    """The FastAPI app: the routers of :mod:`mcr.service.run_routes`, ``video_routes``,
    ``library_routes``, ``media_routes`` and ``page``, sharing one run pool and one memory
    through ``app.state``.
    ``allowed_hosts`` are names it answers to besides the loopback ones."""
    from fastapi import FastAPI

    from mcr.agents import Agent
    from mcr.memory import Memory
    from mcr.service import library_routes, media_routes, page, run_routes, video_routes
    from mcr.service.deps import Service
    from mcr.service.guard import HostGuard
    from mcr.service.runs import RunPool

    roots = [Path(r).expanduser().resolve() for r in media_roots]
    db = Memory(memory)
    traces = Path(trace_dir) if trace_dir else db.path.parent / "traces"

    def make_agent(request: dict) -> Any:
        steps = request.get("max_steps")
        return Agent(
            # a model that keeps a position (a replay script) starts each run from its beginning
            model=model.fresh() if hasattr(model, "fresh") else model,
            memory=db,
            policy=request.get("policy") or None,
            max_steps=12 if steps is None else steps,
            trace_dir=traces,
        )

    pool = RunPool(make_agent, workers, queue_limit, keep_runs, index_workers, index_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        yield
        pool.close()

    app = FastAPI(
        title="MCR", description="Questions about long videos, answered by an agent.", version="1", lifespan=lifespan
    )
    app.state.pool, app.state.memory, app.state.token = pool, db, token
    app.state.service = Service(roots, db, traces, pool, upload_limit, allow_private_urls)
    app.state.service.sweep_uploads()
    for module in (run_routes, video_routes, library_routes, media_routes, page):
        app.include_router(module.router)
    app.add_middleware(HostGuard, allowed=allowed_hosts_of(allowed_hosts))
    return app


def check_bind(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise ServiceError(
            f"binding to {host} makes the service reachable from other machines: give a bearer token "
            "with --token or MCR_TOKEN (or keep the default --host 127.0.0.1)"
        )


__all__ = ["ServiceError", "check_bind", "make_app", "media_path"]
