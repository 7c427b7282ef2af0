"""The live trace: a rich renderer that subscribes to the loop's events."""

from __future__ import annotations

import json
from typing import Any

from mcr.run.events import (
    AnswerProposed,
    Event,
    ModelCalled,
    ModelDelta,
    RunFinished,
    RunStarted,
    ToolCalled,
    ToolReturned,
)
from mcr.types import format_time

MAX_RESULT_LINES = 20
MAX_RESULT_CHARS = 1600


def _span_text(spans: list, videos: list | None = None) -> str:
    """Spans in words; in a library run each with its video."""
    names = list(videos or []) + [""] * len(spans)
    return ", ".join(f"{name} {s}" if name else str(s) for s, name in zip(spans, names)) or "none"


def _cut(text: str, lines: int = MAX_RESULT_LINES, chars: int = MAX_RESULT_CHARS) -> str:
    kept = text.splitlines()
    out = "\n".join(kept[:lines])
    if len(out) > chars:
        out = out[:chars]
    hidden = len(text) - len(out)
    return out + (f"\n… ({hidden} more characters in the trace)" if hidden > 0 else "")


class RichRenderer:
    """Draws each event as it arrives. Call it with an event, or pass it as a subscriber."""

    def __init__(self, console: Any = None, show_reasoning: bool = True) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.show_reasoning = show_reasoning
        self._streaming: tuple | None = None  # (run, step) whose reply is being drawn as it comes

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_" + event.kind, None)
        if handler is not None:
            handler(event)

    def _pad(self, event: Event):
        from rich.padding import Padding

        return lambda r: Padding(r, (0, 0, 0, 4 * event.depth))

    def _run_started(self, e: RunStarted) -> None:
        from rich.panel import Panel
        from rich.text import Text

        body = Text()
        body.append("Question: ", style="bold").append(e.question + "\n")
        for i, opt in enumerate(e.options):
            body.append(f"  {chr(65 + i)}. {opt}\n")
        if e.video.get("library"):
            names = [v.get("name", "") for v in e.video["library"]]
            body.append("Library: ", style="bold").append(f"{len(names)} videos: {', '.join(names)}\n")
        elif e.video:
            v = e.video
            body.append("Video: ", style="bold").append(
                f"{v.get('path', '')}  {format_time(v.get('duration', 0))}  {v.get('fps', 0):.2f} fps  "
                f"{v.get('width', 0)}x{v.get('height', 0)}  audio {'yes' if v.get('has_audio') else 'no'}\n"
            )
        body.append("Model: ", style="bold").append(f"{e.model}   ")
        body.append("Tools: ", style="bold").append(", ".join(e.tools) or "none")
        title = f"MCR run {e.run_id}" + (f" (child of {e.parent_run_id})" if e.parent_run_id else "")
        self.console.print(self._pad(e)(Panel(body, title=title, border_style="cyan", expand=False)))

    def _model_delta(self, e: ModelDelta) -> None:
        from rich.text import Text

        if self._streaming != (e.run_id, e.step):
            self._streaming = (e.run_id, e.step)
            self.console.print(self._pad(e)(Text(f"step {e.step}", style="bold cyan")))
            self.console.print(" " * (4 * e.depth), end="")
        self.console.print(Text(e.text, style="dim"), end="", soft_wrap=True)

    def _model_called(self, e: ModelCalled) -> None:
        from rich.text import Text

        usage = e.output.get("usage", {})
        streamed = self._streaming == (e.run_id, e.step)
        if streamed:  # the reply is on screen already: close its line, add the figures
            self.console.print()
            self._streaming = None
        label = f"step {e.step}" if e.phase == "act" else e.phase
        head = Text("  " if streamed else label, style="bold cyan" if e.phase == "act" else "bold blue")
        head.append(
            f"  model {e.latency_s:.2f} s  {usage.get('input_tokens', 0)} in / "
            f"{usage.get('output_tokens', 0)} out tokens",
            style="dim",
        )
        if e.forced_answer:
            head.append("  (budget spent: asked for the answer)", style="yellow")
        self.console.print(self._pad(e)(head))
        if self.show_reasoning and e.output.get("reasoning"):
            self.console.print(self._pad(e)(Text(_cut(e.output["reasoning"], 8, 600), style="dim italic")))
        if e.output.get("text") and not streamed:
            self.console.print(self._pad(e)(Text(_cut(e.output["text"], 12, 1200))))

    def _tool_called(self, e: ToolCalled) -> None:
        from rich.text import Text

        args = json.dumps(e.arguments, ensure_ascii=False)
        line = Text("  → ", style="magenta").append(e.name, style="bold magenta").append(f"({args})")
        self.console.print(self._pad(e)(line))

    def _tool_returned(self, e: ToolReturned) -> None:
        from rich.text import Text

        style = "red" if e.is_error else "green"
        head = (
            Text("  ← ", style=style)
            .append(e.name, style=f"bold {style}")
            .append(f"  {e.latency_s:.2f} s", style="dim")
        )
        if e.metadata.get("video"):  # a library run: the video this call looked at
            head.append(f"  in {e.metadata['video']}", style="cyan")
        if e.frames:
            head.append(f"  [{len(e.frames.get('timestamps', []))} frames]", style="dim")
        self.console.print(self._pad(e)(head))
        body = Text(_cut(e.text), style="red" if e.is_error else "")
        from rich.padding import Padding

        self.console.print(Padding(body, (0, 0, 0, 4 * e.depth + 6)))

    def _phase(self, e: Any) -> None:
        from rich.text import Text

        if e.phase == "perceive":  # plans and reflections are drawn with their model call
            n = len((e.frames or {}).get("timestamps", []))
            line = Text("perceive", style="bold blue").append(f"  overview of {n} frames", style="dim")
            self.console.print(self._pad(e)(line))
            self.console.print(self._pad(e)(Text(_cut(e.text, 6, 600), style="dim")))

    def _verification(self, e: Any) -> None:
        from rich.text import Text

        ok = e.passed if e.passed is not None else e.verdict in ("pass", "supported")
        line = Text("  ✓ " if ok else "  ✗ ", style="green" if ok else "yellow")
        line.append(f"{e.source} check: {e.verdict}", style="bold")
        if e.source == "model":
            line.append(f" ({e.confidence:.2f})", style="dim")
        if e.reason:
            line.append(f"  {e.reason[:300]}", style="dim")
        self.console.print(self._pad(e)(line))

    def _index_stage(self, e: Any) -> None:
        from rich.text import Text

        line = Text("index ", style="bold blue").append(f"{e.stage}: {e.status}, {e.entries} entries", style="dim")
        if e.reason:
            line.append(f" ({e.reason[:200]})", style="dim")
        self.console.print(self._pad(e)(line))

    def _index_progress(self, e: Any) -> None:
        from rich.text import Text

        share = e.done / e.total if e.total else 1.0
        line = Text("index ", style="bold blue").append(
            f"{e.stage}: building, {share:.0%} ({format_time(e.done)} of {format_time(e.total)})", style="dim"
        )
        self.console.print(self._pad(e)(line))

    def _answer_proposed(self, e: AnswerProposed) -> None:
        from rich.text import Text

        if not e.accepted:
            self.console.print(self._pad(e)(Text(f"  answer not accepted: {e.reason}", style="yellow")))

    def _run_finished(self, e: RunFinished) -> None:
        from rich.panel import Panel
        from rich.text import Text

        r = e.result
        body = Text()
        body.append("Answer: ", style="bold").append((r.answer or "(none)") + "\n")
        body.append("Evidence: ", style="bold").append(_span_text(r.evidence, r.evidence_videos) + "\n")
        usage = r.usage
        body.append(
            f"status {r.status} · {r.steps} steps · {usage.model_calls} model calls · "
            f"{usage.input_tokens + usage.output_tokens} tokens · {r.wall_s:.2f} s",
            style="dim",
        )
        if r.error:
            body.append(f"\nerror: {r.error}", style="red")
        if r.trace_path:
            body.append(f"\ntrace: {r.trace_path}", style="dim")
        ok = r.status not in ("error", "no_answer")
        self.console.print(self._pad(e)(Panel(body, border_style="green" if ok else "red", expand=False)))
