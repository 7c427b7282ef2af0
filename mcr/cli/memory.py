"""``mcr-agent memory list|search|export|clear``, ``mcr-agent index VIDEO`` and
``mcr-agent search VIDEO QUERY`` (temporal grounding over the index).

Nothing heavy is imported here at module level: the main CLI imports this at start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mcr.cli.library import add_library_option, library_files, record
from mcr.cli.options import CLIError, add_device_option, add_memory_option, add_model_options, wide_console
from mcr.memory.entries import KINDS


def _db_path(args: argparse.Namespace) -> Path:
    if args.memory:
        return Path(args.memory)
    return Path(args.workspace or ".") / ".mcr" / "memory.db"


def _video_id(value: str | None) -> str | None:
    """A video id, or the id of a video file's content."""
    if value is None:
        return None
    from mcr.media.sources import is_url, open_video

    if Path(value).is_file() or is_url(value):
        return open_video(value).id
    return value


def _open(args: argparse.Namespace, readonly: bool = True):
    """The memory database: read-only for reading commands (and for a search, when it cannot be
    written: entries not embedded yet are embedded for this search only)."""
    from mcr.memory import Memory, MemoryStoreError
    from mcr.memory.store import unwritable

    path = _db_path(args)
    if readonly and not path.exists():
        raise MemoryStoreError(f"no memory database at {path} (run an agent or `mcr-agent index VIDEO` first)")
    return Memory(path, readonly=readonly or (args.command_memory == "search" and unwritable(path) is not None))


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    memory = _open(args)
    entries = memory.store.query(
        _video_id(args.video), args.kind, limit=args.limit, order="recent" if args.recent else "time"
    )
    table = Table(title=f"{memory.path}: {memory.store.count()} entries", show_lines=False)
    for col in ("id", "video", "kind", "span", "text", "source"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e.ref, (e.video_id or "")[:8], e.kind, str(e.span) if e.span else "", e.text, e.source)
    wide_console().print(table)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    memory = _open(args)
    hits = memory.search(args.query, video_id=_video_id(args.video), kind=args.kind, k=args.k)
    if not hits:
        print("no memory entries matched.")
    for h in hits:
        print(h.line())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    memory = _open(args)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    n = 0
    try:
        for e in memory.store.iter_all(_video_id(args.video)):
            out.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"exported {n} entries to {args.out}", file=sys.stderr)
    return 0


def _moment(value: str) -> float:
    """``--before``: a date or a date and time (ISO 8601, local time unless it names its zone)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date or time; write it as 2025-01-31 or 2025-01-31T12:00"
        ) from None


def cmd_clear(args: argparse.Namespace) -> int:
    memory = _open(args, readonly=False)
    video_id = _video_id(args.video)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(args.before)) if args.before is not None else ""
    before = f" written before {when}" if when else ""
    what = (" of video " + video_id if video_id else "") + (f" of kind {args.kind}" if args.kind else "") + before
    if not args.yes:
        n = len(_matching(memory.store, video_id, args.kind, args.before))
        print(f"would delete {n} entries{what} from {memory.path}; add --yes to do it", file=sys.stderr)
        return 1
    n, stages = memory.store.clear(video_id, args.kind, args.before)
    print(f"deleted {n} entries{what} from {memory.path}")
    if stages and (args.kind or args.before is not None):  # a whole video's stages go with it and say nothing
        names = ", ".join(f"{stage} of {vid[:12]}" for vid, stage in stages)
        print(f"index stages reset (the next `mcr-agent index` or run builds them again): {names}")
    return 0


def _matching(store, video_id: str | None, kind: str | None, before: float | None) -> list:
    """The entries ``clear`` would delete."""
    return [e for e in store.query(video_id, kind) if before is None or e.created_at < before]


def _build(video, memory, stages: list, quiet: bool) -> list:
    """Build (or reuse) ``stages`` (names or stage objects) of ``video``'s index with one
    progress bar per stage."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mcr.media.sources import with_subtitles
    from mcr.memory import VideoIndex

    index = VideoIndex(video, memory)
    stages = with_subtitles(video, stages)
    names = [s if isinstance(s, str) else s.name for s in stages]
    with Progress(  # progress is for a person: on stderr, and only when it is a terminal
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet or not sys.stderr.isatty(),
    ) as bar:
        tasks = {s: bar.add_task(s, total=max(video.duration, 1e-6)) for s in names}
        return index.build(
            stages,
            progress=lambda s, done, total: bar.update(tasks[s], completed=done),
            notice=lambda line: bar.console.print(line) if bar.live.is_started else print(line, file=sys.stderr),
        )


def _without_missing_clip(stages: list[str]) -> list[str]:
    """``stages`` less ``embeddings`` when no CLIP weights can load here (said on stderr, once)."""
    if "embeddings" not in stages:
        return stages
    from mcr.tools.clip import why_no_clip

    why = why_no_clip()
    if why is None:
        return stages
    print(f"embeddings: not built ({why})", file=sys.stderr)
    return [s for s in stages if s != "embeddings"]


def _cost(info: dict) -> str:
    """A stage's counted cost in a few words: model calls, tokens, seconds, and per video hour."""
    if not info.get("model_calls") and not info.get("clips"):
        return ""

    def words(d: dict) -> str:
        tokens = f"{d.get('input_tokens', 0):g} + {d.get('output_tokens', 0):g} tokens"
        return f"{d.get('model_calls', 0):g} model calls, {tokens}, {d.get('seconds', 0):.1f} s"

    failed = f", {info['failed_clips']} clips failed" if info.get("failed_clips") else ""
    hour = info.get("per_video_hour") or {}
    return f"  cost: {words(info)}{failed}" + (f"; per video hour: {words(hour)}" if hour else "")


def cmd_index(args: argparse.Namespace) -> int:
    from mcr.media.sources import is_url, open_video
    from mcr.memory import Memory, VideoIndex
    from mcr.memory.index import check_stages, make_stage

    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    check_stages(names, " in --stages")
    one = args.videos[0]
    glob = not is_url(one) and not Path(one).exists() and any(c in one for c in "*?[")
    if len(args.videos) > 1 or Path(one).is_dir() or glob:
        return cmd_index_library(args, names)
    video = open_video(one)
    memory = Memory(_db_path(args))
    stages: list = _without_missing_clip(names)
    if "captions" in stages:  # the captioning model, and the memory that holds the shots
        from mcr.tools.captions import CaptionStage

        built = VideoIndex(video, memory).state("captions")  # no model named: the built captions stay
        model = args.caption_model or (CaptionStage.model_in(built["version"]) if built else None)
        settings = {"model": model, "memory": memory, "device": args.device}
        stages = [make_stage(s, **settings) if s == "captions" else s for s in stages]
        for stage in stages:  # a caption model that is not here: one line now, before any progress bar
            if not isinstance(stage, str) and stage.model is not None:
                if not VideoIndex(video, memory).is_built(stage.name, stage.version):
                    stage.caption_model()
    reports = _build(video, memory, stages, args.quiet)
    for r in reports:
        extra = f" ({r.reason})" if r.reason else ""
        print(f"{r.stage}: {r.status}, {r.entries} entries, {r.seconds:.2f} s{extra}")
        if _cost(r.info):
            print(_cost(r.info))
        if r.info.get("frames"):  # how many sampled frames the stage actually had to process
            done = ", ".join(f"{v} {k.removeprefix('frames_')}" for k, v in r.info.items() if k.startswith("frames_"))
            print(f"  frames: {r.info['frames']} sampled" + (f", {done}" if done else ""))
    failed = [r for r in reports if r.status == "failed"]
    if failed:  # the others are kept; a later `index` retries the failed ones from where they stopped
        names = ", ".join(r.stage for r in failed)
        print(f"mcr-agent: error: index stage {names} of {video.path} failed: {failed[0].reason}", file=sys.stderr)
        return 1
    print(f"video {video.id} indexed in {memory.path}")
    record(args, [(video.id, str(video.path.absolute()))])
    return 0


def cmd_index_library(args: argparse.Namespace, names: list[str]) -> int:
    """Many videos: a worker pool (or Ray), progress per video and overall, a summary table."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.table import Table

    from mcr.library.build import LibraryError, find_videos, index_local, index_ray

    if "captions" in names:
        raise LibraryError("the captions stage needs a model per video: index a library without it, then caption")
    if args.workers < 1:
        raise LibraryError(f"--workers must be 1 or more, not {args.workers}")
    videos = find_videos(args.videos)
    stages = _without_missing_clip(names)
    db = _db_path(args)
    db.parent.mkdir(parents=True, exist_ok=True)
    shown = not args.quiet and sys.stderr.isatty()
    with Progress(
        TextColumn("{task.description:<40}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
        console=Console(stderr=True), disable=not shown,
    ) as bar:  # fmt: skip
        overall = bar.add_task(f"{len(videos)} videos", total=len(videos))
        bars: dict[str, Any] = {}

        def progress(path: str, stage: str, done: float, total: float) -> None:
            if path not in bars:
                bars[path] = bar.add_task(Path(path).name[:40], total=max(total, 1e-6) * len(stages))
            bar.update(bars[path], completed=stages.index(stage) * total + done if stage in stages else done)

        def finished(outcome: Any) -> None:
            bar.advance(overall)
            if outcome.path in bars:
                bar.update(bars[outcome.path], visible=False)

        if args.ray:
            outcomes = index_ray(videos, db, stages, args.ray, args.workers, on_done=finished)
        else:
            outcomes = index_local(videos, db, stages, args.workers, on_progress=progress, on_done=finished)
    table = Table(title=f"index of {len(videos)} videos in {db}")
    for column in ("video", "status", "seconds", "stages", "reason"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        done = ", ".join(f"{s['stage']} {s['status']}" for s in o.stages)
        table.add_row(Path(o.path).name, o.status, f"{o.seconds:.1f}", done, o.reason)
    Console(width=max(Console().width, 120)).print(table)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("indexed", "reused", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    record(args, [(o.video_id, o.path) for o in outcomes if o.status != "failed"])
    for o in outcomes:
        if o.status == "failed":
            print(f"mcr-agent: error: {o.reason if o.path in o.reason else f'{o.path}: {o.reason}'}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _is_library(targets: list[str]) -> bool:
    from mcr.media.sources import is_url

    one = targets[0]
    return (
        len(targets) > 1
        or Path(one).is_dir()
        or (not is_url(one) and not Path(one).exists() and any(c in one for c in "*?["))
    )


def cmd_search_library(args: argparse.Namespace) -> int:
    """The best spans across the indexed videos of a folder, a glob or several files."""
    from rich.table import Table

    from mcr.library.search import search_library
    from mcr.memory import Memory
    from mcr.memory.store import unwritable
    from mcr.types import TimeSpan

    path = _db_path(args)
    if not path.exists():
        raise CLIError(f"no memory database at {path}: run `mcr-agent index {' '.join(args.video)}` first")
    memory = Memory(path, readonly=unwritable(path) is not None)
    found = search_library(args.video, args.query, memory, args.k, args.device)
    if args.json:
        print(json.dumps(found, ensure_ascii=False, default=str))
        return 0
    table = Table(title=f"{args.query!r} in {found['searched']} of {found['videos']} videos")
    for col in ("#", "video", "span", "score", "signals", "evidence"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(found["results"], 1):
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
        score = f"{r['score']:.2f}" + (" weak" if r.get("weak") else "")
        name = f"{Path(r['video']).name} ({r['video_id'][:8]})"
        table.add_row(str(i), name, str(TimeSpan(*r["span"])), score, shares, "\n".join(r["evidence"]))
    if found["results"]:
        wide_console().print(table)
    else:
        print(f"nothing matches {args.query!r}.")
    if found["not_indexed"]:
        print(f"not indexed (not searched): {', '.join(found['not_indexed'])}", file=sys.stderr)
    return 0


def cmd_search_video(args: argparse.Namespace) -> int:
    """The spans of a video that best match a query, as a table (building the index first)."""
    from rich.table import Table

    from mcr.media.sources import open_video
    from mcr.memory import Memory
    from mcr.memory.store import unwritable
    from mcr.tools.grounding import search_spans
    from mcr.types import TimeSpan

    if not args.query.strip():
        raise CLIError("the query is empty: describe what to find, e.g. 'the man opens the door'")
    if args.library:
        if args.video:
            raise CLIError("name videos or --library NAME, not both")
        args.video = library_files(args)
        return cmd_search_library(args)
    if not args.video:
        raise CLIError("name the video (or several, a folder, a glob) before the query, or --library NAME")
    if _is_library(args.video):
        return cmd_search_library(args)
    video = open_video(args.video[0])
    span = (
        TimeSpan.parse(args.span).clamp(video.duration) if args.span else None
    )  # a bad span: one line, before any work
    path = _db_path(args)
    why = unwritable(path) if path.exists() else None
    memory = Memory(path, readonly=why is not None)
    stages = _without_missing_clip(["transcript", "ocr", "embeddings"])
    if why:  # read what the index holds; anything missing is computed for this search only
        print(f"{path} is read-only ({why}): searching what it holds, building nothing in it", file=sys.stderr)
    failed = [r for r in ([] if why else _build(video, memory, stages, args.quiet)) if r.status == "failed"]
    for r in failed:
        print(f"{r.stage}: failed ({r.reason}); searching without it", file=sys.stderr)
    result = search_spans(video, memory, args.query, args.k, span, args.device)
    if result.is_error:
        text = result.text.removeprefix("error: ").removeprefix("retry: ")  # the model's cue, not the user's
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
        print(f"mcr-agent: error: {message}", file=sys.stderr)
        return 2
    meta = result.metadata
    if args.json:
        print(json.dumps({"query": args.query, "video": str(video.path), **meta}, ensure_ascii=False, default=str))
        return 0
    table = Table(title=f"{args.query!r} in {video.path.name}")
    for col, justify in (
        ("#", "right"),
        ("span", "left"),
        ("score", "right"),
        ("signals", "left"),
        ("evidence", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    for i, r in enumerate(meta["results"], 1):
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
        score = f"{r['score']:.2f}" + (" weak" if r.get("weak") else "")
        table.add_row(str(i), str(TimeSpan(*r["span"])), score, shares, "\n".join(r["evidence"]))
    console = wide_console()
    if meta["results"]:
        console.print(table)
        if any(r.get("weak") for r in meta["results"]):
            console.print(f"weak: below the confidence threshold {meta['threshold']}; leads to check, not evidence")
    else:
        console.print(f"nothing matches {args.query!r}.")
    used = ", ".join(meta["signals"]) or "none"
    gone = "; ".join(f"{k}: {v}" for k, v in meta["unavailable"].items())
    console.print(f"signals used: {used}" + (f" (not used: {gone})" if gone else ""), highlight=False)
    return 0


def register(sub) -> None:
    def workspace_args(p: argparse.ArgumentParser) -> None:
        add_memory_option(p, "memory database (default WORKSPACE/.mcr/memory.db)")
        p.add_argument("--workspace", metavar="DIR", help="workspace folder (default: the current one)")

    mem = sub.add_parser("memory", help="list, search, export or clear a workspace's memory")
    msub = mem.add_subparsers(dest="command_memory", metavar="ACTION", required=True)
    p = msub.add_parser("list", help="entries in time order")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--recent", action="store_true", help="newest first")
    workspace_args(p)
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("search", help="entries by meaning")
    p.add_argument("query")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.add_argument("-k", type=int, default=10)
    workspace_args(p)
    p.set_defaults(func=cmd_search)
    p = msub.add_parser("export", help="all entries as JSON lines")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--out", help="write here instead of stdout")
    workspace_args(p)
    p.set_defaults(func=cmd_export)
    p = msub.add_parser("clear", help="delete entries (all, of a video, of a kind, or older than a date)")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.add_argument("--before", type=_moment, metavar="DATE", help="only entries written before this date (or time)")
    p.add_argument("--yes", action="store_true", help="really delete")
    workspace_args(p)
    p.set_defaults(func=cmd_clear)

    idx = sub.add_parser("index", help="build (or reuse) a video's index")
    idx.add_argument(
        "videos", nargs="+", metavar="VIDEO", help="a video file or URL, or several, folders of videos or glob patterns"
    )
    idx.add_argument("--workers", type=int, default=1, metavar="N", help="videos indexed at once (a library)")
    idx.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="index a library on a Ray cluster: auto, ray://HOST:10001, local"
    )
    idx.add_argument(
        "--stages",
        default="transcript,ocr,shots,embeddings",
        help="comma-separated stages (default: transcript,ocr,shots,embeddings)",
    )
    add_model_options(
        idx,
        "the model that captions clips for the captions stage (a hub id, folder, openai:MODEL@URL, replay:FILE)",
        dest="caption_model",
        endpoint=None,
        memory=None,
    )
    add_device_option(idx, "cpu, cuda or auto (default), for the models the stages load", choices=None)
    idx.add_argument("--quiet", action="store_true", help="no progress bars")
    add_library_option(idx, "also record the videos indexed under this name (added to it), to ask with --library")
    workspace_args(idx)
    idx.set_defaults(func=cmd_index)

    find = sub.add_parser("search", help="when does something happen: a video's spans that best match a query")
    find.add_argument(
        "video",
        nargs="*",
        metavar="VIDEO",
        help="a video file or URL (opened as mcr-agent run opens it), or a library: several files, a folder, a glob",
    )
    find.add_argument("query")
    find.add_argument("-k", type=int, default=5, help="how many spans (1-20, default 5)")
    find.add_argument("--span", help="only search inside this span, e.g. 00:10:00-00:20:00")
    add_device_option(find, "cpu, cuda or auto (default)", choices=None)
    find.add_argument("--json", action="store_true", help="print the results as one JSON object")
    find.add_argument("--quiet", action="store_true", help="no progress bars")
    add_library_option(find, "search the videos recorded under this name (by index --library) instead")
    workspace_args(find)
    find.set_defaults(func=cmd_search_video)
