"""One builder per index stage: a lease row in the store, taken in a write transaction.

A process (or thread) that builds a stage of a video holds its lease: who (a unique owner
id, the pid and the host) and until when. Another builder of the same stage waits while the
lease is held, then finds the stage done and reuses it, or takes the lease over and goes on
from the stage's cursor. A lease is held while its process lives (checked by pid on the same
host) and, for a process on another host, until it expires; every committed chunk renews
it, inside the same transaction that checks the lease is still this builder's, so a builder
that lost its lease never commits a chunk again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

LEASE_S = 600.0  # a lease from another host counts this long after its last renewal


class LeaseLost(Exception):
    """Another builder holds this stage's lease now: this one must not commit."""


@dataclass
class Holder:
    owner: str
    pid: int
    host: str
    expires: float

    def alive(self, now: float) -> bool:
        if self.host != socket.gethostname():
            return self.expires > now
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a process of another user: it exists
            return True
        return True

    def __str__(self) -> str:
        return f"process {self.pid}" + ("" if self.host == socket.gethostname() else f" on {self.host}")


class Lease:
    """The lease of one stage of one video, for one builder."""

    def __init__(self, store: Any, video_id: str, stage: str) -> None:
        self.store, self.video_id, self.stage = store, video_id, stage
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def holder(self, conn: Any = None) -> Holder | None:
        row = (
            (conn or self.store.conn)
            .execute(
                "SELECT owner, pid, host, expires FROM leases WHERE video_id = ? AND stage = ?",
                (self.video_id, self.stage),
            )
            .fetchone()
        )
        return Holder(*row) if row else None

    def try_take(self) -> tuple[bool, Holder | None]:
        """Take the lease if it is free, stale or ours: ``(taken, the builder who holds it or held
        it last)``."""
        with self.store.write() as c:
            held = self.holder(c)
            if held is not None and held.owner == self.owner:
                held = None
            if held is not None and held.alive(time.time()):
                return False, held
            c.execute(
                "INSERT OR REPLACE INTO leases (video_id, stage, owner, pid, host, expires) VALUES (?,?,?,?,?,?)",
                (self.video_id, self.stage, self.owner, os.getpid(), socket.gethostname(), time.time() + LEASE_S),
            )
        return True, held

    def take(self, on_wait: Any = None, poll_s: float = 0.25) -> tuple[float, Holder | None]:
        """Wait until the lease is this builder's: ``(seconds waited, the builder that held it
        before: the one waited for, or one that died holding it)``. ``on_wait(holder)`` is called
        once, when a wait begins."""
        t0, first = time.monotonic(), None
        while True:
            taken, held = self.try_take()
            if taken:
                return time.monotonic() - t0, first or held
            if first is None:
                first = held
                if on_wait is not None:
                    on_wait(held)
            time.sleep(poll_s)

    def renew(self, conn: Any) -> None:
        """Inside a chunk's write transaction: raise ``LeaseLost`` unless the lease is still ours."""
        held = self.holder(conn)
        if held is None or held.owner != self.owner:
            raise LeaseLost(f"{held or 'nobody'} holds the lease of {self.stage} now")
        conn.execute(
            "UPDATE leases SET expires = ? WHERE video_id = ? AND stage = ? AND owner = ?",
            (time.time() + LEASE_S, self.video_id, self.stage, self.owner),
        )

    def release(self) -> None:
        with self.store.write() as c:
            c.execute(
                "DELETE FROM leases WHERE video_id = ? AND stage = ? AND owner = ?",
                (self.video_id, self.stage, self.owner),
            )
