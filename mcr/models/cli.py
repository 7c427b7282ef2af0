"""``mcr-agent models``: the known model profiles and whether each is on this machine."""

from __future__ import annotations

import argparse
import json


def where(profile) -> str:
    """Where the weights of a known model are on this machine, if anywhere (checks files only)."""
    import importlib.util

    from . import _hub_snapshot

    if _hub_snapshot(profile.name) is not None:
        return "HF cache"
    if profile.package and importlib.util.find_spec(profile.package) is not None:
        return "pip"
    return "-"


def cmd_models(args: argparse.Namespace) -> int:
    from .profiles import PROFILES, SERVER

    rows = []
    for p in PROFILES + [SERVER]:
        row = {**p.to_dict(), "vision": p.vision, "available": "server" if p is SERVER else where(p)}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Known models (--model NAME; a server: openai:MODEL@URL)", title_justify="left")
    for name in ("model", "input", "context", "frames", "pixels", "tool calls", "default", "weights"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        sees = r["vision"] != "text only"
        table.add_row(
            r["name"],
            r["vision"],
            f"{r['context_window'] // 1024}K",
            str(r["max_frames"]) if sees else "-",
            f"{int(r['max_pixels'] ** 0.5)}²" if sees else "-",
            "native" if r["native_tools"] else "grammar",
            r["default_for"].upper(),
            r["available"],
        )
    Console().print(table)
    return 0


def register(subparsers) -> None:
    """Add the ``models`` command to ``mcr-agent``."""
    models = subparsers.add_parser("models", help="list the known model profiles and which are on this machine")
    models.add_argument("--json", action="store_true", help="print the profiles as JSON")
    models.set_defaults(func=cmd_models)


__all__ = ["register"]
