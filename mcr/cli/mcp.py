"""``mcr-agent mcp``: MCR as an MCP server (``mcr.service.mcp``)."""

from __future__ import annotations

from typing import Any

from mcr.service.mcp import build_server


def register(sub: Any) -> None:
    m = sub.add_parser("mcp", help="MCR as an MCP server (stdio, or streamable HTTP with --http PORT)")
    m.add_argument("--model", default=None, help="the model that answers ask_video")
    m.add_argument("--endpoint", default=None, metavar="URL", help="an OpenAI-compatible server for --model")
    m.add_argument("--memory", default=None, metavar="FILE", help="memory database (default .mcr/memory.db)")
    m.add_argument("--media-root", action="append", default=[], metavar="DIR", help="only files under these folders")
    m.add_argument("--http", type=int, default=None, metavar="PORT", help="streamable HTTP on 127.0.0.1:PORT")
    m.set_defaults(func=cmd_mcp)


def cmd_mcp(args: Any) -> int:
    from mcr.models import load_model

    model = load_model(args.model, endpoint=args.endpoint, background=True)
    server = build_server(model, args.memory, args.media_root)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")
    return 0
