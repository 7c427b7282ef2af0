"""``mcr-agent analyze``: a video's chapters, highlights, summary and subtitles (``mcr.outputs.analyze``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcr.outputs.analyze import analyze, write


def register(sub: Any) -> None:
    a = sub.add_parser("analyze", help="a video's chapters, highlights and summary, and its transcript as subtitles")
    a.add_argument("video", help="a video file or URL")
    a.add_argument("-o", "--out", default=None, metavar="DIR", help="where the files go (default: VIDEO_NAME.analysis)")
    a.add_argument("--model", default=None, help="a model for chapter titles, summaries and the whole's summary")
    a.add_argument("--endpoint", default=None, metavar="URL", help="an OpenAI-compatible server for --model")
    a.add_argument("--memory", default=None, metavar="FILE", help="memory database (default .mcr/memory.db)")
    a.set_defaults(func=cmd_analyze)


def cmd_analyze(args: Any) -> int:
    from mcr.media.sources import open_video
    from mcr.memory import Memory

    video = open_video(args.video)
    model = None
    if args.model or args.endpoint:
        from mcr.models import load_model

        model = load_model(args.model, endpoint=args.endpoint, background=True)
    result = analyze(video, Memory(args.memory), model)
    out = Path(args.out) if args.out else Path(f"{video.path.stem}.analysis")
    for path in write(result, out):
        print(path)
    print(result["summary"])
    return 0
