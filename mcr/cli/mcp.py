"""``mcr-agent mcp``: MCR as an MCP server (``mcr.service.mcp``)."""

from __future__ import annotations

import threading
from typing import Any

from mcr.cli.options import add_model_options, memory_from, model_from
from mcr.service.mcp import build_server


def register(sub: Any) -> None:
    m = sub.add_parser("mcp", help="MCR as an MCP server (stdio, or streamable HTTP with --http PORT)")
    add_model_options(m, "the model that answers ask_video")
    m.add_argument("--media-root", action="append", default=[], metavar="DIR", help="only files under these folders")
    m.add_argument("--http", type=int, default=None, metavar="PORT", help="streamable HTTP on 127.0.0.1:PORT")
    m.set_defaults(func=cmd_mcp)


def cmd_mcp(args: Any) -> int:
    server = build_server(model_from(args), memory_from(args), args.media_root)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        serve_stdio(server)
    return 0


def serve_stdio(server: Any) -> None:
    """Serve over stdio on a daemon thread, so SIGTERM and Ctrl-C end the process at once: the
    server reads stdin on a worker thread that no signal stops, and the interpreter would wait
    for it until stdin closes. The waiting main thread gets the signal and ends the command."""
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            server.run("stdio")
        except BaseException as exc:  # noqa: BLE001 - raised again on the main thread
            failed.append(exc)

    worker = threading.Thread(target=serve, name="mcp-stdio", daemon=True)  # its workers are daemons too
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
