"""``mcr-agent serve``: the HTTP service and its page (``mcr.service``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mcr.service.app import ServiceError, check_bind, make_app


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="MCR as an HTTP service: an API with live traces, and a page to ask a video")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)")
    s.add_argument("--port", type=int, default=8420)
    s.add_argument("--model", default=None, help="the model every run uses (loaded once)")
    s.add_argument("--endpoint", default=None, metavar="URL", help="an OpenAI-compatible server for --model")
    s.add_argument("--media-root", action="append", default=[], metavar="DIR", help="a folder of videos (repeat)")
    s.add_argument("--memory", default=None, metavar="FILE", help="memory database (default .mcr/memory.db)")
    s.add_argument("--token", default=os.environ.get("MCR_TOKEN"), help="bearer token (default $MCR_TOKEN)")
    s.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    s.add_argument("--queue", type=int, default=8, help="runs waiting before 429 (default 8)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: Any) -> int:
    import uvicorn

    from mcr.models import load_model

    check_bind(args.host, args.token)
    for root in args.media_root:
        if not Path(root).is_dir():
            raise ServiceError(f"--media-root {root} is not a folder")
    model = load_model(args.model, endpoint=args.endpoint, background=True)
    app = make_app(model, args.media_root, args.memory, args.token, args.workers, args.queue)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
