"""A built index stage moved between databases: read out of one as plain data (its state,
entries with their embeddings, arrays) and written into another in one transaction, under
the stage's lease. Used to index on other machines and store the results in one place."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from .index import VideoIndex
from .lease import Lease


def export_stage(index: VideoIndex, stage: str) -> dict | None:
    """Stage ``stage`` of ``index`` as plain, picklable data; None when it was never built."""
    st = index.state(stage)
    if st is None:
        return None
    rows = index.store.conn.execute(
        "SELECT id, embedding, encoder FROM entries WHERE video_id = ? AND source = ? ORDER BY id",
        (index.video_id, f"index:{stage}"),
    ).fetchall()
    entries = index.store.get_many([r[0] for r in rows])
    encoders = {r[2] for r in rows}
    vectors = None
    if rows and len(encoders) == 1 and None not in encoders:
        vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    return {
        "stage": stage,
        "version": st["version"],
        "status": st["status"],
        "cursor": st["cursor"],
        "total": st["total"],
        "info": st["info"],
        "entries": entries,
        "encoder": encoders.pop() if vectors is not None else None,
        "vectors": vectors,
        "arrays": index.arrays(stage),
    }


def adopt_stage(index: VideoIndex, built: dict[str, Any]) -> None:
    """Replace stage ``built["stage"]`` of ``index`` with ``built`` (from ``export_stage``)."""
    name = built["stage"]
    lease = Lease(index.store, index.video_id, name)
    lease.take()
    try:
        index._reset(name)
        entries = list(built["entries"])
        for e in entries:
            e.id, e.video_id, e.source = None, index.video_id, f"index:{name}"
        vectors, encoder = built.get("vectors"), built.get("encoder")
        if vectors is not None and encoder != index.memory.encoder.name:
            vectors = encoder = None  # embedded by another encoder: embedded again here when searched
        with index.store.write() as c:
            index._store(c, name, entries, vectors, encoder, built["arrays"])
            stage = SimpleNamespace(name=name, version=built["version"])
            index._set_state(stage, built["status"], built["cursor"], built["total"], built["info"], conn=c)
    finally:
        lease.release()
