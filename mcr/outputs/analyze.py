"""A video's shape from its index: chapters, highlights and a summary, and its transcript as
subtitles (``mcr-agent analyze VIDEO``).

Chapters start at shot boundaries. A video with few shots gets a chapter per shot; a longer one
keeps the boundaries where the picture and the talk change most: each boundary is scored by the
strength of its cut and by how far the speech before it and after it differ in meaning (the
memory's sentence encoder), and the best are kept, at least a minimum length apart. Highlights
are the moments with the most signal: text appearing on screen, the strongest scene changes, and
speech after a long silence, each with why. Without a model, chapter titles are the first words
said (or shown) in them and the output says that titles need one; with a model, each chapter's
speech and on-screen text (as data) get a title and a one-line summary, and the whole a summary.

Written: ``analysis.json``, ``analysis.md``, ``chapters.vtt`` (WebVTT chapters), and the
transcript as ``transcript.srt`` and ``transcript.vtt``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcr.types import format_time

MAX_CHAPTERS = 12
WINDOW_S = 60.0  # speech on each side of a boundary compared for the topic shift


def analyze(video: Any, memory: Any, model: Any = None, stages: tuple = ("shots", "transcript", "ocr")) -> dict:
    """Build (or reuse) the index stages and describe the video (see the module)."""
    from mcr.memory import VideoIndex

    reports = VideoIndex(video, memory).build(list(stages))
    said = memory.store.query(video.id, kind="transcript")
    shown = memory.store.query(video.id, kind="ocr")
    cuts = sorted(memory.store.query(video.id, kind="shot"), key=lambda e: e.span.end)
    duration = float(video.duration)
    bounds = choose_bounds(cuts, said, duration, memory)
    edges = [0.0] + bounds + [duration]
    chapters = []
    for a, b in zip(edges, edges[1:]):
        speech = [e.text for e in said if a <= e.span.start < b]
        text = [e.text for e in shown if a <= e.span.start < b]
        first = (speech or text or [""])[0]
        chapters.append(
            {
                "start": round(a, 3),
                "end": round(b, 3),
                "title": _words(first, 8) or f"Part {len(chapters) + 1}",
                "summary": _words(" ".join(speech), 30),
                "on_screen": text[:5],
            }  # fmt: skip
        )
    result = {
        "video": video.info(),
        "chapters": chapters,
        "highlights": highlights(cuts, said, shown),
        "summary": "",
        "titled_by": "",
        "index": [r.to_dict() for r in reports],
        "transcript": [{"start": e.span.start, "end": e.span.end, "text": e.text} for e in said],
    }
    if model is None:
        result["summary"] = (
            f"{len(chapters)} chapters over {format_time(duration)}: {len(cuts)} shot changes, "
            f"{len(said)} sentences spoken, {len(shown)} lines of on-screen text. Titles and summaries "
            "need a model (--model); these are the first words of each chapter."
        )
        result["titled_by"] = "first words (no model)"
    else:
        _titles(result, model)
    return result


def choose_bounds(cuts: list, said: list, duration: float, memory: Any) -> list[float]:
    """The shot boundaries that start chapters (see the module)."""
    times = [e.span.end for e in cuts if 0.5 < e.span.end < duration - 0.5]
    if len(times) + 1 <= MAX_CHAPTERS:
        return times
    want = min(MAX_CHAPTERS, max(3, round(duration / 120.0)))
    gap = duration / (2 * want)
    scores = []
    for e in cuts:
        t = e.span.end
        before = " ".join(s.text for s in said if t - WINDOW_S <= s.span.start < t)
        after = " ".join(s.text for s in said if t <= s.span.start < t + WINDOW_S)
        shift = 0.0
        if before and after:
            a, b = memory.encoder.encode([before, after])
            shift = 1.0 - float(a @ b)
        scores.append((float(e.confidence or 0.0) + shift, t))
    kept: list[float] = []
    for _, t in sorted(scores, reverse=True):
        if 0.5 < t < duration - 0.5 and all(abs(t - k) >= gap for k in kept):
            kept.append(t)
        if len(kept) == want - 1:
            break
    return sorted(kept)


def highlights(cuts: list, said: list, shown: list, most: int = 5) -> list[dict]:
    """The moments with the most signal, each with why."""
    found = [{"start": e.span.start, "end": e.span.end, "why": f"text on screen: {e.text}", "score": 1.0 + len(e.text) / 100}
             for e in shown]  # fmt: skip
    found += [{"start": e.span.start, "end": e.span.end, "why": f"scene change (strength {e.confidence or 0:.2f})",
               "score": float(e.confidence or 0.0)} for e in cuts]  # fmt: skip
    last = -1e9
    for e in said:
        if e.span.start - last > 20.0:
            found.append(
                {"start": e.span.start, "end": e.span.end, "why": f"speech after silence: {e.text}", "score": 0.8}
            )
        last = e.span.end
    found.sort(key=lambda h: -h["score"])
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in h.items()} for h in found[:most]]


def _words(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def _titles(result: dict, model: Any) -> None:
    """Titles and summaries from the model, given each chapter's speech and text as data."""
    from mcr.quoting import DATA_RULE, quote
    from mcr.types import Message

    for c in result["chapters"]:
        said = " ".join(t["text"] for t in result["transcript"] if c["start"] <= t["start"] < c["end"])
        material = quote(f"speech: {said[:3000]}\non screen: {'; '.join(c['on_screen'])}", "chapter")
        prompt = (
            f"A chapter of a video, {format_time(c['start'])}-{format_time(c['end'])}:\n{material}\n"
            'Reply with JSON: {"title": "at most 8 words", "summary": "one sentence"}.'
        )
        out = model.generate([Message("system", DATA_RULE), Message("user", prompt)], None, max_new_tokens=120)
        reply = _json(out.text)
        c["title"] = str(reply.get("title") or c["title"])[:120]
        c["summary"] = str(reply.get("summary") or c["summary"])[:400]
    lines = "\n".join(f"{format_time(c['start'])} {c['title']}: {c['summary']}" for c in result["chapters"])
    prompt = f"The chapters of a video:\n{quote(lines, 'chapters')}\nSummarise the whole video in two sentences."
    result["summary"] = model.generate([Message("system", DATA_RULE), Message("user", prompt)], None).text.strip()
    result["titled_by"] = getattr(model, "name", "model")


def _json(text: str) -> dict:
    start, end = text.find("{"), text.rfind("}")
    try:
        found = json.loads(text[start : end + 1]) if start >= 0 else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _stamp(t: float, comma: bool) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def cues_vtt(cues: list[tuple[float, float, str]]) -> str:
    body = "".join(f"\n{i}\n{_stamp(a, False)} --> {_stamp(b, False)}\n{t}\n" for i, (a, b, t) in enumerate(cues, 1))
    return "WEBVTT\n" + body


def cues_srt(cues: list[tuple[float, float, str]]) -> str:
    return "".join(f"{i}\n{_stamp(a, True)} --> {_stamp(b, True)}\n{t}\n\n" for i, (a, b, t) in enumerate(cues, 1))


def write(result: dict, out_dir: str | os.PathLike) -> list[Path]:
    """The files of an analysis in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chapters = [(c["start"], c["end"], c["title"]) for c in result["chapters"]]
    spoken = [(t["start"], max(t["end"], t["start"] + 0.01), t["text"]) for t in result["transcript"]]
    md = [f"# {Path(result['video']['path']).name}", "", result["summary"], "", "## Chapters", ""]
    md += [f"- **{format_time(c['start'])}** {c['title']}" + (f" — {c['summary']}" if c["summary"] else "")
           for c in result["chapters"]]  # fmt: skip
    md += ["", "## Highlights", ""] + [f"- {format_time(h['start'])}: {h['why']}" for h in result["highlights"]]
    files = {
        "analysis.json": json.dumps(result, indent=1, ensure_ascii=False, default=str),
        "analysis.md": "\n".join(md) + "\n",
        "chapters.vtt": cues_vtt(chapters),
        "transcript.vtt": cues_vtt(spoken),
        "transcript.srt": cues_srt(spoken),
    }
    from mcr.files import write_text

    return [write_text(out / name, text) for name, text in files.items()]


__all__ = ["analyze", "choose_bounds", "cues_srt", "cues_vtt", "highlights", "write"]
