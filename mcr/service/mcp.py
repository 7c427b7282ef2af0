"""``mcr-agent mcp``: MCR as a Model Context Protocol server (the ``mcp`` package's ``MCPServer``),
over stdio or streamable HTTP, so another agent can use it as a tool.

Tools: ``ask_video`` (an answer with its status, evidence spans and trace), ``search_video``
(grounded spans for a query), ``index_video`` (build or reuse the index) and ``video_info``. A
video is a path or a URL as ``mcr-agent run`` takes it; with ``--media-root`` only files under
those folders are opened.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def told() -> Iterator[None]:
    """A caller's mistake (a missing file, a path outside the media roots, a URL that gives no
    video) goes back inside the tool's result as its one line, with no traceback on stderr."""
    from mcp.server.mcpserver.exceptions import ToolError

    from mcr.errors import MCRError

    try:
        yield
    except MCRError as exc:
        raise ToolError(exc.one_line()) from None
    except (ValueError, OSError) as exc:
        raise ToolError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def build_server(model: Any, memory: Any = None, media_roots: Sequence[str] = (), trace_dir: Any = None) -> Any:
    from mcp.server.mcpserver import MCPServer

    from mcr.agents import Agent
    from mcr.media.sources import is_url, open_video
    from mcr.memory import Memory, VideoIndex
    from mcr.service.paths import media_path
    from mcr.tools.grounding import search_spans

    db = memory if isinstance(memory, Memory) else Memory(memory)
    roots = [Path(r).expanduser().resolve() for r in media_roots]
    server = MCPServer(
        "mcr",
        instructions="Answers questions about videos (local files or URLs) with evidence spans; "
        "search_video finds when something happens.",
        log_level="WARNING",  # a caller's mistake is told in the tool's result, not logged on stderr too
    )

    def video_of(spec: str) -> Any:
        with told():
            if roots and not is_url(spec):
                return open_video(media_path(spec, roots))
            return open_video(spec, progress=False)

    @server.tool()
    def ask_video(video: str, question: str, options: list[str] | None = None) -> dict:
        """Answer a question about a video; returns the answer, its status, the evidence spans
        (seconds) and the run's trace file."""
        agent = Agent(model=model.fresh() if hasattr(model, "fresh") else model, memory=db, trace_dir=trace_dir)
        handle = video_of(video)
        with told():
            result = agent.run(handle, question, options=options or None)
        return {
            "answer": result.answer,
            "status": result.status,
            "evidence": [s.to_list() for s in result.evidence],
            "evidence_text": [str(s) for s in result.evidence],
            "trace": result.trace_path,
        }

    @server.tool()
    def search_video(video: str, query: str, k: int = 5) -> dict:
        """The spans of a video that best match a query (speech, on-screen text, frames)."""
        result = search_spans(video_of(video), db, query, max(1, min(k, 20)))
        if result.is_error:
            with told():
                raise ValueError(result.text.removeprefix("error: ").removeprefix("retry: ").strip())
        return {"query": query, "results": result.metadata.get("results", []), "text": result.text}

    @server.tool()
    def index_video(video: str) -> dict:
        """Build (or reuse) the video's index: shots, transcript and on-screen text."""
        handle = video_of(video)
        with told():
            reports = VideoIndex(handle, db).build(["shots", "transcript", "ocr"])
        return {"video_id": handle.id, "stages": [r.to_dict() for r in reports]}

    @server.tool()
    def video_info(video: str) -> dict:
        """Duration, frame rate, size, audio, and where the video came from."""
        handle = video_of(video)
        return {"video_id": handle.id, **handle.info()}

    return server


__all__ = ["build_server"]
