"""``mcr-agent library list|show|remove``: the named libraries of a memory database; and
``--library NAME`` of ``index`` (record the videos indexed under NAME), ``search`` and ``run``
(ask the videos recorded under NAME).

Nothing heavy is imported here at module level: the main CLI imports this at start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from mcr.cli.options import PROG, CLIError, add_memory_option


def name_arg(value: str) -> str:
    """A library's name on the command line, checked (one line when it is not one)."""
    from mcr.memory.store import NamedLibraryError, library_name

    try:
        return library_name(value)
    except NamedLibraryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_library_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--library", type=name_arg, default=None, metavar="NAME", help=help)


def _db(args: argparse.Namespace) -> Path:
    """The memory database, as ``index`` and ``run`` pick it (``--memory``, else WORKSPACE/.mcr/memory.db)."""
    if getattr(args, "memory", None):
        return Path(args.memory)
    return Path(getattr(args, "workspace", None) or ".") / ".mcr" / "memory.db"


def _store(args: argparse.Namespace, readonly: bool = True) -> Any:
    from mcr.memory.store import MemoryStore

    path = _db(args)
    if not path.exists():
        raise CLIError(f"no memory database at {path}: make a library with `{PROG} index DIR_OR_GLOB --library NAME`")
    return MemoryStore(path, readonly=readonly)


def library_files(args: argparse.Namespace) -> list[str]:
    """The files of the library ``--library`` names that are where they were indexed; those that
    are not are said in one line on stderr and left out."""
    found, gone = _store(args).library_files(args.library)
    if gone:
        print(
            f"{PROG}: warning: left out of library {args.library!r}, not where it was indexed (moved or deleted): "
            f"{', '.join(gone)}; index it where it is now with `{PROG} index PATH --library {args.library}`",
            file=sys.stderr,
        )
    return found


def record(args: argparse.Namespace, videos: Iterable[tuple[str, str]]) -> None:
    """``index --library NAME``: the videos indexed (``(video_id, path)``) recorded under NAME."""
    web = ("http://", "https://")
    videos = [(v, p if p.startswith(web) else os.path.abspath(p)) for v, p in videos if v]  # without "../" in it
    if not args.library or not videos:
        return
    store = _store(args, readonly=False)
    added = store.add_to_library(args.library, videos)
    print(f"library {args.library}: {len(store.library(args.library))} videos ({added} added)")


def cmd_list(args: argparse.Namespace) -> int:
    found = _store(args).libraries()
    if not found:
        print(f"no libraries in {_db(args)}; make one with `{PROG} index DIR_OR_GLOB --library NAME`")
    for lib in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(lib["added_at"]))
        print(f"{lib['name']}: {lib['videos']} videos, last added {when}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    for video in store.library(args.name):
        done = store.conn.execute(
            "SELECT stage FROM stages WHERE video_id = ? AND status = 'done' ORDER BY stage", (video["video_id"],)
        ).fetchall()
        state = f"index: {', '.join(s for (s,) in done) or 'none'}" if video["found"] else "MOVED OR DELETED"
        print(f"{video['path']}  {video['video_id'][:12]}  {state}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    n = _store(args, readonly=False).remove_library(args.name)
    print(f"library {args.name} forgotten ({n} videos; their index stays in {_db(args)})")
    return 0


def register(sub: Any) -> None:
    lib = sub.add_parser("library", help="list, show or remove the named libraries (index ... --library NAME)")
    lsub = lib.add_subparsers(dest="command_library", metavar="ACTION", required=True)
    actions = (
        ("list", "the named libraries", cmd_list),
        ("show", "a library's videos, their index, and which have moved", cmd_show),
        ("remove", "forget a library's name (its videos' index stays)", cmd_remove),
    )
    for action, help, func in actions:
        p = lsub.add_parser(action, help=help)
        if action != "list":
            p.add_argument("name", type=name_arg, metavar="NAME")
        add_memory_option(p, "memory database (default WORKSPACE/.mcr/memory.db)")
        p.add_argument("--workspace", metavar="DIR", help="workspace folder (default: the current one)")
        p.set_defaults(func=func)
