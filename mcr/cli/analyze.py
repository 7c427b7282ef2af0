"""``mcr-agent analyze``: a video's chapters, highlights, summary and subtitles (``mcr.outputs.analyze``)."""

from __future__ import annotations

from typing import Any

from mcr.cli.options import add_model_options, memory_from, model_from, output_folder
from mcr.outputs.analyze import analyze, write


def register(sub: Any) -> None:
    a = sub.add_parser("analyze", help="a video's chapters, highlights and summary, and its transcript as subtitles")
    a.add_argument("video", help="a video file or URL")
    a.add_argument("-o", "--out", default=None, metavar="DIR", help="where the files go (default: VIDEO_NAME.analysis)")
    add_model_options(a, "a model for chapter titles, summaries and the whole's summary")
    a.set_defaults(func=cmd_analyze)


def cmd_analyze(args: Any) -> int:
    from mcr.media.sources import open_video
    from mcr.memory import Memory

    video = open_video(args.video)
    out = output_folder(args.out or f"{video.path.stem}.analysis", "the analysis")  # before the work, not after
    model = model_from(args, optional=True)
    result = analyze(video, Memory(memory_from(args)), model)
    for path in write(result, out):
        print(path)
    print(result["summary"])
    return 0
