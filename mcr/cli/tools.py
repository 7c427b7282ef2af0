"""``mcr-agent tools``: the tools and their schemas; and the ``--tools`` argument of the commands
that run an agent (built-in names, or a ``.py`` file or module of ``@tool`` functions)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from mcr.cli.options import CLIError
from mcr.errors import ToolNameError


def load_tools(spec: str) -> list:
    """``@tool`` objects from a Python file or an importable module."""
    from mcr.tools import Tool, Toolset, tools_of

    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise CLIError(f"tools file not found: {spec}")
        name = f"mcr_user_tools_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            raise CLIError(f"cannot import tools module {spec!r}: {exc}") from None
    found = [v for v in vars(module).values() if isinstance(v, Tool)]
    found += [t for v in vars(module).values() if isinstance(v, Toolset) for t in tools_of(v)]
    if not found:
        raise CLIError(f"{spec} defines no @tool functions")
    return found


def tool_specs(spec: str) -> list:
    """Names of built-in tools (``asr,ocr,inspect_frames``: only those are on) or the tools of a
    ``.py`` file or module (added to the built-in ones)."""
    from mcr.tools import BUILTIN_NAMES

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names and all(n in BUILTIN_NAMES for n in names):
        return names
    if "," in spec:
        unknown = [n for n in names if n not in BUILTIN_NAMES]
        raise ToolNameError(
            f"unknown tool {unknown[0]!r} in --tools {spec}: the built-in tools are {', '.join(BUILTIN_NAMES)}"
        )
    return load_tools(spec)


def cmd_tools(args: argparse.Namespace) -> int:
    from mcr.tools import ToolRegistry, builtin_tools

    registry = ToolRegistry(builtin_tools(memory=True))
    for spec in args.tools:
        for t in load_tools(spec):
            registry.add(t, replace=True)
    if args.json:
        print(json.dumps(registry.schemas(), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="MCR tools", show_lines=False)
    table.add_column("tool", style="bold")
    table.add_column("arguments")
    table.add_column("description")
    table.add_column("timeout")
    for t in registry.listing():
        props = t["parameters"].get("properties", {})
        required = set(t["parameters"].get("required", []))
        argtext = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in props.items())
        timeout = ("none" if t["timeout"] is None else f"{t['timeout']:g} s") + (
            ", can be stopped" if t["cancellable"] else ""
        )
        table.add_row(t["name"], argtext, t["description"].splitlines()[0] if t["description"] else "", timeout)
    Console().print(table)
    return 0


def register(sub: Any) -> None:
    tools = sub.add_parser("tools", help="list the tools and their schemas")
    tools.add_argument("--json", action="store_true", help="print the schemas as JSON")
    tools.add_argument("--tools", action="append", default=[], metavar="FILE_OR_MODULE", help="also load these tools")
    tools.set_defaults(func=cmd_tools)
