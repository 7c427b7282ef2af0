"""Media files over HTTP on 127.0.0.1 for tests: with or without range requests, validators
(ETag, Last-Modified) and conditional requests, a connection dropped half way, any status."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from local_server import LocalServer


@dataclass
class Served:
    data: bytes
    content_type: str = "video/mp4"
    ranges: bool = True  # answers Range with 206; without, the whole file every time
    validators: bool = True  # ETag and Last-Modified, and 304 to a matching conditional request
    drop_after: int | None = None  # the first GET closes the connection after this many bytes
    status: int = 200


class MediaServer(LocalServer):
    def __init__(self, files: dict[str, Served]) -> None:
        super().__init__()
        self.files = files  # the test may change what is served
        self.sent: dict[str, int] = {}  # body bytes sent per path
        self.log: list[dict] = []  # each request's path, Range, If-Range, If-None-Match and status

    def serve(self, handler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        item = self.files.get(path)
        entry = {k: handler.headers.get(k) for k in ("Range", "If-Range", "If-None-Match")}
        entry["path"] = path
        self.log.append(entry)
        if item is None or item.status != 200:
            entry["status"] = 404 if item is None else item.status
            return self.send(handler, entry["status"], b"no such file", {"Content-Type": "text/plain"}, body)
        etag = '"' + hashlib.sha1(item.data).hexdigest()[:16] + '"'
        headers = {"Content-Type": item.content_type}
        if item.validators:
            headers |= {"ETag": etag, "Last-Modified": "Tue, 01 Dec 2026 08:00:00 GMT"}
            if handler.headers.get("If-None-Match") == etag:
                entry["status"] = 304
                handler.send_response(304)
                handler.send_header("ETag", etag)
                handler.end_headers()
                return None
        data, code = item.data, 200
        wanted = handler.headers.get("Range", "")
        if item.ranges:
            headers["Accept-Ranges"] = "bytes"
            if wanted.startswith("bytes=") and handler.headers.get("If-Range", etag) == etag:
                start = int(wanted[6:].split("-")[0])
                if start >= len(item.data):
                    entry["status"] = 416
                    return self.send(handler, 416, b"", {"Content-Range": f"bytes */{len(item.data)}"}, body)
                data, code = item.data[start:], 206
                headers["Content-Range"] = f"bytes {start}-{len(item.data) - 1}/{len(item.data)}"
        entry["status"] = code
        if body and item.drop_after is not None and handler.command == "GET":
            cut, item.drop_after = item.drop_after, None
            handler.send_response(code)
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[:cut])
            handler.wfile.flush()
            self.sent[path] = self.sent.get(path, 0) + cut
            handler.close_connection = True
            return None
        self.send(handler, code, data, headers, body)
        if body:
            self.sent[path] = self.sent.get(path, 0) + len(data)
        return None
