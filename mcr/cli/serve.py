"""``mcr-agent serve``: the HTTP service and its page (``mcr.service``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mcr.cli.options import add_model_options, memory_from, model_from
from mcr.service.app import ServiceError, check_bind, make_app


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="MCR as an HTTP service: an API with live traces, and a page to ask a video")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)")
    s.add_argument("--port", type=int, default=8420)
    add_model_options(s, "the model every run uses (loaded once)")
    s.add_argument("--media-root", action="append", default=[], metavar="DIR", help="a folder of videos (repeat)")
    s.add_argument("--token", default=os.environ.get("MCR_TOKEN"), help="bearer token (default $MCR_TOKEN)")
    s.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    s.add_argument("--queue", type=int, default=8, help="runs waiting before 429 (default 8)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: Any) -> int:
    import uvicorn

    check_bind(args.host, args.token)
    for root in args.media_root:
        if not Path(root).is_dir():
            raise ServiceError(f"--media-root {root} is not a folder")
    app = make_app(model_from(args), args.media_root, memory_from(args), args.token, args.workers, args.queue)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
