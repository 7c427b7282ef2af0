"""``LiveSession``: a live stream watched into memory, segment by segment, and asked at any time.

The reader (:mod:`mcr.media.live`) cuts the stream into segment files; a second thread puts each
finished segment through the index stages in order (shots, speech, on-screen text, embeddings
when CLIP loads here, captions when asked for with a model) and adds what they found to the memory
under the session's id, at the segment's stream times, so the index grows while the stream
plays. Each new segment is checked against the standing ``when`` queries. ``ask`` answers from
what is indexed so far: the segments joined into one video, known to memory by the session's id.
A session's folder (``.mcr/live/ID`` beside the memory database) keeps its segments and a
record (``session.json``), so a stopped session can be reopened and asked later.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from mcr.errors import MCRError
from mcr.files import write_text
from mcr.media.live import Gap, LiveReader, Segment
from mcr.media.video import Video
from mcr.types import TimeSpan, format_time

log = logging.getLogger(__name__)
STAGES = ("shots", "transcript", "ocr", "embeddings")
TEXT_KINDS = ("transcript", "ocr", "caption")
WHEN_SCORE = 0.55  # a standing query matches a new entry at least this close in meaning


class SessionError(MCRError):
    """A live session that cannot be found or asked."""


class SessionVideo(Video):
    """The stream so far as one video file, known to memory by the session's id."""

    def __init__(self, path: str | os.PathLike, session_id: str, live: dict) -> None:
        super().__init__(path)
        self.session_id, self.live = session_id, live

    @property
    def id(self) -> str:
        return self.session_id

    def info(self) -> dict:
        return {**super().info(), "live": self.live}


def sessions_folder(memory: Any) -> Path:
    """Absolute, so that lists of files handed to ffmpeg hold paths that do not depend on the
    folder ffmpeg resolves them from (it reads a concat list's entries from the list's own folder)."""
    return Path(memory.path).resolve().parent / "live"


def _concat_line(path: Path) -> str:
    """One entry of an ffmpeg concat list: the absolute path, single quotes escaped as the
    format wants them."""
    return "file '" + str(path.resolve()).replace("'", "'\\''") + "'\n"


def wall(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class LiveSession:
    """Watch ``source`` into ``memory`` (see the module). ``start()`` returns at once; ``stop()``
    ends the reading, flushes the last segment and waits for it to be indexed."""

    def __init__(
        self,
        source: str,
        memory: Any = None,
        stages: Sequence[str] | None = None,
        segment_s: float = 10.0,
        when: Sequence[str] = (),
        webhook: str | None = None,
        model: Any = None,
        agent: Any = None,
        on_event: Callable[[dict], None] | None = None,
        session_id: str | None = None,
        read_timeout_s: float | None = None,
        give_up_after_s: float | None = 60.0,
    ) -> None:
        from mcr.memory import Memory

        self.memory = memory if isinstance(memory, Memory) else Memory(memory)
        self.id = session_id or f"live-{uuid.uuid4().hex[:10]}"
        self.folder = sessions_folder(self.memory) / self.id
        self.source, self.segment_s, self.model, self.agent = source, float(segment_s), model, agent
        self.when, self.webhook = [w for w in when if w.strip()], webhook
        self.on_event = on_event or (lambda e: None)
        self.stage_names = list(stages) if stages is not None else _default_stages()
        self.record: dict = {
            "id": self.id,
            "source": source,
            "started": time.time(),
            "segment_s": self.segment_s,
            "stages": self.stage_names,
            "segments": [],
            "gaps": [],
            "matches": [],
            "status": "watching",
        }
        self.reader = LiveReader(
            source,
            self.folder,
            segment_s,
            self._arrived,
            self._gap,
            read_timeout_s=read_timeout_s,
            on_failure=self._failed,
            give_up_after_s=give_up_after_s,
        )
        self._queue: queue.Queue = queue.Queue()
        self._matching = {q: False for q in self.when}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- watching
    def start(self) -> "LiveSession":
        from mcr.memory.index import make_stage

        settings = {"model": self.model, "memory": self.memory} if self.model is not None else {}
        self.stages = [make_stage(n, **settings) if n == "captions" else make_stage(n) for n in self.stage_names]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._save()
        self.memory.store.remember_video(self.id, str(self.folder), {"live": {"source": self.source}})
        for name, target in (("live-read", self._read), ("live-index", self._index_loop)):
            thread = threading.Thread(target=target, name=f"{name} {self.id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading, flush the last segment, index what arrived; the session stays askable."""
        self.reader.stop()
        for thread in self._threads:
            thread.join(timeout)
        if self.record["status"] != "failed":
            self.record["status"] = "stopped"
        self._save()

    @property
    def watching(self) -> bool:
        """True while the stream is read or its last segments indexed."""
        return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the source ends (a growing file that stops growing) or ``stop`` is called."""
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _read(self) -> None:
        try:
            self.reader.run()
            if self.reader.error:
                with self._lock:
                    self.record["status"], self.record["error"] = "failed", self.reader.error
                self._save()
                self.on_event({"event": "source_gave_up", "session": self.id, "reason": self.reader.error})
        finally:
            self._queue.put(None)  # the indexer ends after the last segment

    def _arrived(self, segment: Segment) -> None:
        self._queue.put(segment)

    def _failed(self, attempt: int, reason: str) -> None:
        self.on_event({"event": "source_failed", "session": self.id, "attempt": attempt, "reason": reason})

    @property
    def error(self) -> str:
        """Why the session stopped reading when no segment ever arrived ('' otherwise)."""
        return self.reader.error

    def _gap(self, gap: Gap) -> None:
        secs = gap.wall_end - gap.wall_start
        text = (
            f"stream gap: no signal from {wall(gap.wall_start)} to {wall(gap.wall_end)} ({secs:.1f} s) "
            f"at stream time {format_time(gap.at)} ({gap.reason})"
        )
        at = TimeSpan(gap.at, gap.at)
        self.memory.write(text, "event", self.id, at, source="live", data={"gap": gap.to_dict()})
        with self._lock:
            self.record["gaps"].append(gap.to_dict())
        self._save()
        self.on_event({"event": "gap", "session": self.id, **gap.to_dict(), "text": text})

    def _index_loop(self) -> None:
        while (segment := self._queue.get()) is not None:
            try:
                self._index(segment)
            except Exception as exc:  # noqa: BLE001 - one bad segment is reported, the next ones go on
                log.warning("segment %d of %s could not be indexed: %s", segment.index, self.id, exc)
                self.on_event({"event": "error", "session": self.id, "segment": segment.index, "reason": str(exc)})

    def _index(self, segment: Segment) -> None:
        from mcr.memory import VideoIndex

        video = Video(segment.path)
        index = VideoIndex(_Ref(self.id), self.memory)
        found: dict[str, int] = {}
        new = []
        for stage in self.stages:
            if stage.skip_reason(video):
                continue
            result = stage.run_chunk(video, video.span)
            found[stage.name] = index.append(stage, video.span, result, shift=segment.start)
            new += [e for e in result.entries if e.kind in TEXT_KINDS]
        lag = time.time() - segment.wall_end
        row = {**segment.to_dict(), "path": segment.path.name, "entries": found, "lag_s": round(lag, 3)}
        with self._lock:
            self.record["segments"].append(row)
        self._save()
        self.on_event({"event": "segment", "session": self.id, **row})
        for query in self.when:
            self._check(query, segment, new)

    # ------------------------------------------------------------ standing queries
    def _check(self, query: str, segment: Segment, new: list) -> None:
        hit = _best(query, new, self.memory)
        if hit is not None and self.model is not None and not _confirmed(self.model, query, hit[0].text):
            hit = None
        matched, before = hit is not None, self._matching[query]
        self._matching[query] = matched
        if not matched or before:  # once per stretch of segments that match
            return
        entry, score = hit
        event = {
            "event": "match",
            "session": self.id,
            "query": query,
            "segment": segment.index,
            "span": [entry.span.start, entry.span.end],
            "text": entry.text,
            "kind": entry.kind,
            "score": round(score, 3),
            "wall": wall(segment.wall_start + max(0.0, entry.span.start - segment.start)),
        }
        with self._lock:
            self.record["matches"].append(event)
        self._save()
        self.on_event(event)
        if self.webhook:
            threading.Thread(target=_post, args=(self.webhook, event), daemon=True).start()

    # ------------------------------------------------------------------- asking
    def ask(self, question: str, agent: Any = None) -> Any:
        """Answer ``question`` from what the stream showed so far (``RunResult``), with ``agent``
        (an ``Agent`` on this session's memory) or the one that started the watch."""
        agent = agent or self.agent
        if agent is None:
            raise SessionError("asking needs an agent: start the session with Agent.watch, or pass agent=")
        return ask(self.id, question, agent)

    def _save(self) -> None:
        with self._lock:
            write_text(self.folder / "session.json", json.dumps(self.record, indent=1, default=str))


class _Ref:
    """The session as the video index sees it: an id."""

    def __init__(self, video_id: str) -> None:
        self.id = video_id


def _default_stages() -> list[str]:
    """Shots, speech, on-screen text, and frame embeddings when CLIP loads here (captions, which
    need a model on every segment, only when asked for in ``stages``)."""
    from mcr.tools.clip import why_no_clip

    return [name for name in STAGES if name != "embeddings" or why_no_clip() is None]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def _best(query: str, entries: list, memory: Any) -> tuple[Any, float] | None:
    """The new entry that matches ``query``: one holding all its words, else the closest in
    meaning when close enough."""
    if not entries:
        return None
    wanted = _words(query)
    for e in entries:
        if wanted and wanted <= _words(e.text):
            return e, 1.0
    vectors = memory.encoder.encode([query] + [e.text for e in entries])
    scores = vectors[1:] @ vectors[0]
    i = int(scores.argmax())
    return (entries[i], float(scores[i])) if scores[i] >= WHEN_SCORE else None


def _confirmed(model: Any, query: str, text: str) -> bool:
    from mcr.quoting import DATA_RULE, quote
    from mcr.types import Message

    prompt = (
        f"Condition: {query}\nWhat the stream just showed:\n{quote(text, 'stream')}\n"
        "Does what the stream showed meet the condition? Answer yes or no."
    )
    out = model.generate([Message("system", DATA_RULE), Message("user", prompt)], None, max_new_tokens=8)
    return out.text.strip().lower().startswith("yes")


def _post(url: str, event: dict) -> None:
    body = json.dumps(event).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - a webhook that fails must not stop the watching
        log.warning("webhook %s failed: %s", url, exc)


# ----------------------------------------------------------------- asking a session
def load_session(session_id: str, memory: Any) -> dict:
    path = sessions_folder(memory) / session_id / "session.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = (
            sorted(p.name for p in sessions_folder(memory).glob("live-*")) if sessions_folder(memory).is_dir() else []
        )
        raise SessionError(
            f"no live session {session_id!r} beside {memory.path}"
            + (f"; the sessions there: {', '.join(known)}" if known else "")
        ) from None


def snapshot(session_id: str, memory: Any) -> SessionVideo:
    """The session's indexed segments joined into one video (made once per segment count)."""
    record = load_session(session_id, memory)
    folder = sessions_folder(memory) / session_id
    segments = sorted(record["segments"], key=lambda s: s["index"])
    if not segments:
        raise SessionError(f"live session {session_id} has no segment indexed yet: ask again in a moment")
    target = folder / f"so-far-{len(segments):05d}.mp4"
    if not target.exists():
        listing = folder / f"so-far-{len(segments):05d}.txt"
        listing.write_text("".join(_concat_line(folder / s["path"]) for s in segments), encoding="utf-8")
        tmp = target.with_name(target.stem + f".{os.getpid()}.tmp.mp4")
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        listing.unlink(missing_ok=True)
        if done.returncode != 0:
            raise SessionError(f"cannot join the segments of {session_id}: {done.stderr.strip()[:200]}")
        os.replace(tmp, target)
        for old in folder.glob("so-far-*.mp4"):
            if old != target:
                old.unlink(missing_ok=True)
    last = segments[-1]
    live = {
        "source": record["source"],
        "started": wall(record["started"]),
        "stream_start": wall(segments[0]["wall_start"]),
        "watched_to": format_time(last["end"]),
        "watched_to_wall": wall(last["wall_end"]),
        "gaps": len(record.get("gaps", [])),
    }
    return SessionVideo(target, session_id, live)


def ask(session_id: str, question: str, agent: Any) -> Any:
    """Answer ``question`` about live session ``session_id`` with ``agent`` (an ``Agent`` whose
    memory holds the session) from what the session indexed so far."""
    if agent.memory is None:
        raise SessionError("asking a live session needs an agent with a memory (the session's)")
    return agent.run(snapshot(session_id, agent.memory), question)  # the stages built live are reused


__all__ = ["LiveSession", "SessionError", "SessionVideo", "ask", "load_session", "snapshot"]
