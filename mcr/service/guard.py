"""What a web page on another site cannot do to the service: reach it under a name it rebound to
127.0.0.1 (DNS rebinding: a ``Host`` not allowed answers 421), or change anything from its own
origin (a state-changing request whose ``Origin`` is not an allowed host answers 403)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Iterable

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def host_name(value: str) -> str:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    return frozenset([*LOOPBACK_NAMES, *(host_name(h) for h in extra if h)])


def origin_host(origin: str) -> str | None:
    """The host of an ``Origin`` header; None for ``null`` or anything that is not a URL."""
    parts = urllib.parse.urlsplit(origin.strip())
    return parts.hostname.lower() if parts.scheme in ("http", "https") and parts.hostname else None


class HostGuard:
    """ASGI middleware: the Host allowlist, and no state change from a foreign Origin."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = host_name(headers.get("host", ""))
        if host not in self.allowed:
            return await refuse(
                send, 421, f"this service does not answer to the host {host!r}: start it with --allowed-host"
            )
        origin = headers.get("origin")
        if origin is not None and scope.get("method", "GET") in CHANGES and origin_host(origin) not in self.allowed:
            return await refuse(send, 403, "a request from another site's page cannot change anything here")
        return await self.app(scope, receive, send)


async def refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["HostGuard", "LOOPBACK_NAMES", "allowed_hosts", "host_name", "origin_host"]
