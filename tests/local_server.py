"""An HTTP server on 127.0.0.1 for tests: a subclass answers in ``serve(handler, body)``; every
request is counted in ``requests`` ("METHOD PATH"), so a test can tell what reached the network."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.posts: list[tuple[str, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                server.serve(self, body=False)

            def do_GET(self) -> None:
                server.serve(self, body=True)

            def do_POST(self) -> None:  # kept in ``posts`` (a webhook's calls), answered 204
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.posts.append((self.path, data))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def send(handler, code: int, data: bytes = b"", headers: dict | None = None, body: bool = True) -> None:
        handler.send_response(code)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
