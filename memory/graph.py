"""The entity and event graph: who or what took part in which event, and when.

Nodes and edges persist in the memory store; ``to_networkx()`` builds a networkx
``MultiDiGraph`` with the temporal relations (``before``, ``during``) derived from
the events' spans.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from mcr.types import TimeSpan

from .store import MemoryStore

RELATIONS = ("before", "after", "during", "any")


def entity_id(video_id: str | None, name: str) -> str:
    key = re.sub(r"\s+", " ", name.strip().lower())
    return f"entity:{video_id or '-'}:{key}"


@dataclass
class Event:
    id: str
    label: str
    span: TimeSpan | None
    entities: list[str]


class MemoryGraph:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def add_entity(self, name: str, video_id: str | None = None, **data) -> str:
        node = entity_id(video_id, name)
        with self.store.write() as c:
            c.execute(
                "INSERT OR IGNORE INTO nodes (id, video_id, type, label, data) VALUES (?,?,?,?,?)",
                (node, video_id, "entity", name.strip(), json.dumps(data, default=str)),
            )
        return node

    def add_event(
        self,
        label: str,
        span: TimeSpan | None,
        entities: Iterable[str] = (),
        video_id: str | None = None,
        entry_id: int | None = None,
        relation: str = "participates",
    ) -> str:
        """An event with its span, linked to the entities that take part in it."""
        names = [n for n in (e.strip() for e in entities) if n]
        with self.store.write() as c:
            n = c.execute("SELECT COUNT(*) FROM nodes WHERE type = 'event'").fetchone()[0] + 1
            while c.execute("SELECT 1 FROM nodes WHERE id = ?", (f"event:{video_id or '-'}:{n}",)).fetchone():
                n += 1  # events deleted with a rebuilt index stage leave gaps
            node = f"event:{video_id or '-'}:{n}"
            c.execute(
                'INSERT INTO nodes (id, video_id, type, label, start, "end", entry_id) VALUES (?,?,?,?,?,?,?)',
                (
                    node,
                    video_id,
                    "event",
                    label.strip(),
                    span.start if span else None,
                    span.end if span else None,
                    entry_id,
                ),
            )
            for name in names:
                ent = entity_id(video_id, name)
                c.execute(
                    "INSERT OR IGNORE INTO nodes (id, video_id, type, label) VALUES (?,?,?,?)",
                    (ent, video_id, "entity", name),
                )
                c.execute(
                    "INSERT OR IGNORE INTO edges (src, dst, relation, video_id) VALUES (?,?,?,?)",
                    (ent, node, relation, video_id),
                )
        return node

    def events(self, video_id: str | None = None, entity: str | None = None) -> list[Event]:
        args: list = []
        sql = 'SELECT n.id, n.label, n.start, n."end" FROM nodes n'
        clauses = ["n.type = 'event'"]
        if entity is not None:
            sql += " JOIN edges e ON e.dst = n.id"
            clauses.append("e.src = ?")
            args.append(entity_id(video_id, entity))
        if video_id is not None:
            clauses.append("n.video_id = ?")
            args.append(video_id)
        sql += " WHERE " + " AND ".join(clauses) + ' ORDER BY n.start IS NULL, n.start, n."end", n.id'
        rows = self.store.conn.execute(sql, args).fetchall()
        out = []
        for node, label, start, end in rows:
            ents = [
                r[0]
                for r in self.store.conn.execute(
                    "SELECT m.label FROM edges e JOIN nodes m ON m.id = e.src WHERE e.dst = ? ORDER BY m.label", (node,)
                )
            ]
            out.append(Event(node, label, TimeSpan(start, end) if start is not None else None, ents))
        return out

    def entities(self, video_id: str | None = None) -> list[str]:
        rows = self.store.conn.execute(
            "SELECT label FROM nodes WHERE type = 'entity' AND (? IS NULL OR video_id = ?) ORDER BY label",
            (video_id, video_id),
        ).fetchall()
        return [r[0] for r in rows]

    def query(
        self,
        entity: str,
        relation: str = "any",
        time: float | None = None,
        span: TimeSpan | None = None,
        video_id: str | None = None,
    ) -> list[Event]:
        """Events of ``entity`` before/after a time, during a span, or all, in time order."""
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {', '.join(RELATIONS)}")
        events = self.events(video_id, entity)
        if relation == "before":
            if time is None:
                raise ValueError("'before' needs a time")
            return [e for e in events if e.span is not None and e.span.end <= time]
        if relation == "after":
            if time is None:
                raise ValueError("'after' needs a time")
            return [e for e in events if e.span is not None and e.span.start >= time]
        if relation == "during":
            window = span or (TimeSpan(time, time) if time is not None else None)
            if window is None:
                raise ValueError("'during' needs a span or a time")
            return [e for e in events if e.span is not None and e.span.overlaps(window)]
        return events

    def to_networkx(self, video_id: str | None = None):
        """A ``networkx.MultiDiGraph``: entity→event ``participates`` edges, and between
        events ``before`` (one ends before the next starts) and ``during`` (contained)."""
        import networkx as nx

        g = nx.MultiDiGraph()
        rows = self.store.conn.execute(
            'SELECT id, type, label, start, "end" FROM nodes WHERE (? IS NULL OR video_id = ?)', (video_id, video_id)
        )
        for node, typ, label, start, end in rows:
            g.add_node(node, type=typ, label=label, start=start, end=end)
        for src, dst, rel in self.store.conn.execute(
            "SELECT src, dst, relation FROM edges WHERE (? IS NULL OR video_id = ?)", (video_id, video_id)
        ):
            g.add_edge(src, dst, relation=rel)
        timed = sorted(
            (d["start"], d["end"], n) for n, d in g.nodes(data=True) if d["type"] == "event" and d["start"] is not None
        )
        for i, (s1, e1, a) in enumerate(timed):
            for s2, _, b in timed[i + 1 :]:
                if s2 >= e1:
                    g.add_edge(a, b, relation="before")
                    break  # the chain of 'before' edges gives the rest by transitivity
            for s2, e2, b in timed:
                if b != a and s1 <= s2 and e2 <= e1 and (s1, e1) != (s2, e2):
                    g.add_edge(b, a, relation="during")
        return g


def describe_events(events: Sequence[Event]) -> str:
    if not events:
        return "no events found."
    return "\n".join(
        f"{e.span if e.span else '(no time)'} {e.label}" + (f" [{', '.join(e.entities)}]" if e.entities else "")
        for e in events
    )
