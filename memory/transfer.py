"""A built index stage moved between databases: read out of one as plain data (its state,
entries with their embeddings, arrays) and written into another in one transaction, under
the stage's lease. Used to index on other machines and store the results in one place."""

from __future__ import annotations

import json
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
            index.store.add_many(entries, vectors, encoder)
            for e in entries:
                if e.data.get("entities"):
                    index.memory.graph.add_event(e.text, e.span, e.data["entities"], index.video_id, entry_id=e.id)
            for key, arr in built["arrays"]:
                arr = np.ascontiguousarray(arr)
                c.execute(
                    "INSERT OR REPLACE INTO arrays (video_id, stage, key, dtype, shape, value) VALUES (?,?,?,?,?,?)",
                    (index.video_id, name, float(key), str(arr.dtype), json.dumps(arr.shape), arr.tobytes()),
                )
            c.execute(
                "INSERT INTO stages (video_id, stage, version, status, cursor, total, info, updated_at) "
                "VALUES (?,?,?,?,?,?,?,strftime('%s','now'))",
                (
                    index.video_id,
                    name,
                    built["version"],
                    built["status"],
                    built["cursor"],
                    built["total"],
                    json.dumps(built["info"]),
                ),
            )
    finally:
        lease.release()
