"""A library run: the overview the model starts from, and the rule that evidence cites a span of
a video the run looked at, checked against what was seen in that video only.

The loop, the checker and the tools are those of a one-video run; the registry points each
tool call at the video it names (``mcr.tools.library``), and the context's tool results carry
that video's id, so what was seen is known per video.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from mcr.quoting import quote
from mcr.types import TimeSpan, format_time

from .answers import TypedAnswer
from .overview import memory_lines
from .verify import AnswerChecker, Support, Verdict, check_rules

if TYPE_CHECKING:
    from mcr.tools.library import Library

    from .context import Context

LIBRARY_NOTE = (
    "The question is about a library of {n} videos, not one. Every tool that looks at a video takes "
    "`video`: the name of the video to look at. library_search finds spans across all of them. "
    'Cite each evidence span with its video: {{"video": NAME, "span": "HH:MM:SS.s-HH:MM:SS.s"}}.'
)


def library_info(library: Library | None) -> dict:
    """What a run's start records of its library (each video's info and name); {} for none."""
    if library is None:
        return {}
    return {"library": [{**v.info(), "id": v.id, "name": library.name_of(v)} for v in library.videos]}


def indexed_stages(memory: Any, video_id: str) -> list[str]:
    """The index stages built for a video in ``memory`` (none without memory)."""
    if memory is None:
        return []
    rows = memory.store.conn.execute(
        "SELECT stage FROM stages WHERE video_id = ? AND status = 'done' ORDER BY stage", (video_id,)
    ).fetchall()
    return [r[0] for r in rows]


def library_overview(library: Library, memory: Any, max_chars: int) -> str:
    """One block listing each video: its name, length, what its index holds (stages, a line of
    its speech and of its on-screen text), cut to ``max_chars`` (the videos left out are counted)."""
    head = LIBRARY_NOTE.format(n=len(library.videos))
    blocks: list[str] = []
    used = len(head)
    for i, video in enumerate(library.videos):
        name = library.name_of(video)
        stages = indexed_stages(memory, video.id)
        facts = (
            f"length {format_time(video.duration)}, audio: {'yes' if video.has_audio else 'no'}, "
            f"index: {', '.join(stages) or 'none'}"
        )
        lines = []
        for kind, label in (("caption", "seen"), ("transcript", "says"), ("ocr", "shows")):
            said = memory_lines(memory, video.id, kind, video.span, 1)
            if said:
                lines.append(f"{label}: {said[0][:160]}")
        held = "\n" + quote("\n".join(lines), "index") if lines else ""  # the video's own words: data
        block = f"{i + 1}. " + quote(name, "video name") + f"\n{facts}{held}"
        if used + len(block) > max_chars and blocks:
            blocks.append(f"... and {len(library.videos) - i} more videos (library_search searches all of them).")
            break
        blocks.append(block)
        used += len(block)
    return head + "\nVideos:\n" + "\n".join(blocks)


def survey(context: Context, library: Library, memory: Any) -> str:
    """A library run's overview, added to ``context`` as its perception: each video's name, length
    and what its index holds, in characters up to the context's tokens (about a quarter of it)."""
    text = library_overview(library, memory, context.profile.max_context_tokens)
    context.add("perception", text, 0)
    return text


def perceived_in(context: Context, video_id: str) -> Support | None:
    """What the run perceived of one video: the frames shown of it and the spans read in it by
    the tool calls that looked at it; None when no call looked at it."""
    seen, looked = Support(), False
    for e in context.entries:
        if e.kind != "tool_result" or e.data.get("is_error") or e.data.get("video") != video_id:
            continue
        looked = True
        if e.frames is not None:
            seen.frames += [float(t) for t in e.frames.timestamps]
        seen.frames += e.data.get("seen_at", [])
        seen.readings += [{"source": e.data.get("name", ""), "span": list(s)} for s in e.data.get("read", [])]
    return seen if looked else None


def check_cited(
    verdict: Verdict,
    library: Library,
    evidence: Sequence[TimeSpan],
    videos: Sequence[str],
    seen_in: Callable[[Any, list[TimeSpan]], Support | None],
    within_s: float,
) -> Verdict:
    """``verdict`` (the rules' verdict on the answer's form) with each cited span checked in the
    video it names: a video of the library, looked at in this run, the span inside it and seen
    there (``seen_in(video, spans)``: what was perceived of it, None when nothing was)."""
    failures = [verdict.reason] if verdict.reason else []
    checks, support = list(verdict.checks), []
    for span, ref in zip(evidence, list(videos) + [""] * len(evidence)):
        video = library.find(ref)
        if video is None:
            failures.append(
                f"evidence {span} names no video of the library ({ref!r}); name one of: {library.listing()}"
                if ref
                else f'evidence {span} does not say which video it is in: cite it as {{"video": NAME, "span": "..."}}'
            )
            continue
        name = library.name_of(video)
        seen = seen_in(video, [span])
        if seen is None:
            failures.append(
                f"evidence {span} is in {name}, which was not looked at in this run; "
                f"look at {span} in {name} first (or cite the video that shows it)"
            )
            continue
        one = check_rules(TypedAnswer("text", ""), "", [span], video.duration, seen, False, within_s)
        failures += [f"{name}: {r}" for r in one.reason.split("; ") if r]
        checks += [f"{name}: {c}" for c in one.checks[1:]]  # the first says the form fits, said once already
        support += [{**s, "video": name} for s in one.support]
    verdict.verdict = "fail" if failures else "pass"
    verdict.reason, verdict.checks, verdict.support = "; ".join(failures), checks, support
    return verdict


class LibraryChecker(AnswerChecker):
    """The answers of a library run: each cited span is checked in the video it names."""

    def _rules(
        self, typed: TypedAnswer | None, form_problem: str, evidence: list[TimeSpan], videos: Sequence[str] = ()
    ) -> Verdict:
        within = self.policy.seen_within_s

        def seen_in(video: Any, spans: list[TimeSpan]) -> Support | None:
            found = perceived_in(self.context, video.id)
            return None if found is None else self.seen(spans, video, found)

        verdict = check_rules(typed or TypedAnswer(self.form, ""), form_problem, [], None, Support(), False, within)
        if self.cite and not evidence:
            wanted = "cite the spans that show the answer, each with its video (evidence)"
            verdict.reason = "; ".join(r for r in (verdict.reason, wanted) if r)
        return check_cited(verdict, self.library, evidence, videos, seen_in, within)
