"""``mcr-agent memory list|search|export|clear`` and ``mcr-agent index VIDEO``.

Nothing heavy is imported here at module level: the main CLI imports this at start.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _db_path(args: argparse.Namespace) -> Path:
    if args.memory:
        return Path(args.memory)
    return Path(args.workspace or ".") / ".mcr" / "memory.db"


def _video_id(value: str | None) -> str | None:
    """A video id, or the id of a video file's content."""
    if value is None:
        return None
    if Path(value).is_file():
        from mcr.video import Video

        return Video(value).id
    return value


def _open(args: argparse.Namespace, readonly: bool = True):
    from mcr.memory import Memory, MemoryStoreError

    path = _db_path(args)
    if readonly and not path.exists():
        raise MemoryStoreError(f"no memory database at {path} (run an agent or `mcr-agent index VIDEO` first)")
    return Memory(path, readonly=readonly and args.command_memory in ("list", "export"))


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    memory = _open(args)
    entries = memory.store.query(_video_id(args.video), args.kind, limit=args.limit,
                                 order="recent" if args.recent else "time")
    table = Table(title=f"{memory.path}: {memory.store.count()} entries", show_lines=False)
    for col in ("id", "video", "kind", "span", "text", "source"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e.ref, (e.video_id or "")[:8], e.kind, str(e.span) if e.span else "", e.text, e.source)
    Console().print(table)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    memory = _open(args, readonly=False)
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


def cmd_clear(args: argparse.Namespace) -> int:
    memory = _open(args, readonly=False)
    video_id = _video_id(args.video)
    n = memory.store.count(video_id, args.kind)
    what = f"{n} entries" + (f" of video {video_id}" if video_id else "") + (f" of kind {args.kind}" if args.kind else "")
    if not args.yes:
        print(f"would delete {what} from {memory.path}; add --yes to do it", file=sys.stderr)
        return 1
    memory.store.delete(video_id, args.kind)
    print(f"deleted {what} from {memory.path}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mcr.memory import Memory, VideoIndex
    from mcr.video import Video

    video = Video(args.video)
    memory = Memory(_db_path(args))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    index = VideoIndex(video, memory)
    with Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), disable=args.quiet) as bar:
        tasks = {s: bar.add_task(s, total=max(video.duration, 1e-6)) for s in stages}
        reports = index.build(stages, progress=lambda s, done, total: bar.update(tasks[s], completed=done))
    for r in reports:
        extra = f" ({r.reason})" if r.reason else ""
        print(f"{r.stage}: {r.status}, {r.entries} entries, {r.seconds:.2f} s{extra}")
    print(f"video {video.id} indexed in {memory.path}")
    return 0


def register(sub) -> None:
    def workspace_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--memory", metavar="FILE", help="memory database (default WORKSPACE/.mcr/memory.db)")
        p.add_argument("--workspace", metavar="DIR", help="workspace folder (default: the current one)")

    mem = sub.add_parser("memory", help="list, search, export or clear a workspace's memory")
    msub = mem.add_subparsers(dest="command_memory", metavar="ACTION", required=True)
    p = msub.add_parser("list", help="entries in time order")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", help="only this kind")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--recent", action="store_true", help="newest first")
    workspace_args(p)
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("search", help="entries by meaning")
    p.add_argument("query")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", help="only this kind")
    p.add_argument("-k", type=int, default=10)
    workspace_args(p)
    p.set_defaults(func=cmd_search)
    p = msub.add_parser("export", help="all entries as JSON lines")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--out", help="write here instead of stdout")
    workspace_args(p)
    p.set_defaults(func=cmd_export)
    p = msub.add_parser("clear", help="delete entries (all, of a video, or of a kind)")
    p.add_argument("--video", help="a video id or file")
    p.add_argument("--kind", help="only this kind")
    p.add_argument("--yes", action="store_true", help="really delete")
    workspace_args(p)
    p.set_defaults(func=cmd_clear)

    idx = sub.add_parser("index", help="build (or reuse) a video's index")
    idx.add_argument("video")
    idx.add_argument("--stages", default="shots", help="comma-separated stages (default: shots)")
    idx.add_argument("--quiet", action="store_true", help="no progress bars")
    workspace_args(idx)
    idx.set_defaults(func=cmd_index)
