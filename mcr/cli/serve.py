"""``mcr-agent serve``: the HTTP service and its page (``mcr.service``)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

from mcr.cli.options import add_model_options, memory_from, model_from
from mcr.service.app import MAX_REQUEST_HEAD, ServiceError, check_bind, make_app
from mcr.service.runs import KEEP_RUNS


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="MCR as an HTTP service: an API with live traces, and a page to ask a video")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)")
    s.add_argument("--port", type=int, default=8420)
    add_model_options(s, "the model every run uses (loaded once)")
    s.add_argument("--media-root", action="append", default=[], metavar="DIR", help="a folder of videos (repeat)")
    s.add_argument("--token", default=os.environ.get("MCR_TOKEN"), help="bearer token (default $MCR_TOKEN)")
    s.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    s.add_argument("--queue", type=int, default=8, help="runs waiting before 429 (default 8)")
    s.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the service answers to besides 127.0.0.1, localhost and ::1 (repeat); others get 421",
    )
    s.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let POST /v1/videos fetch URLs on loopback and private addresses (refused by default)",
    )
    s.add_argument(
        "--keep-runs",
        type=int,
        default=KEEP_RUNS,
        help=f"finished runs whose events stay in memory; older ones are read from their traces (default {KEEP_RUNS})",
    )
    s.add_argument("--index-workers", type=int, default=1, help="index builds at once (default 1)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: Any) -> int:
    import uvicorn

    check_bind(args.host, args.token)
    for name, value in (
        ("--workers", args.workers),
        ("--keep-runs", args.keep_runs),
        ("--index-workers", args.index_workers),
    ):
        if value < 1:
            raise ServiceError(f"{name} must be 1 or more, not {value}")
    if args.queue < 0:
        raise ServiceError(f"--queue must be 0 or more, not {args.queue}")
    for root in args.media_root:
        if not Path(root).is_dir():
            raise ServiceError(f"--media-root {root} is not a folder")
    sock = bind(args.host, args.port)  # before anything is loaded or said: a busy port is one line
    hosts = [*args.allowed_host, *([args.host] if args.host not in ("0.0.0.0", "::") else [])]
    app = make_app(
        model_from(args),
        args.media_root,
        memory_from(args),
        args.token,
        args.workers,
        args.queue,
        allowed_hosts=hosts,
        allow_private_urls=args.allow_private_urls,
        keep_runs=args.keep_runs,
        index_workers=args.index_workers,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", h11_max_incomplete_event_size=MAX_REQUEST_HEAD))
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    server.run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ``ServiceError`` saying why when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = (
            "the port is in use by another program: stop it or choose another --port"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise ServiceError(f"cannot serve on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock
