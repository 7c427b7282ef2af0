"""``mcr-agent``: the command line. Each command comes from a module's ``register(subparsers)``
named under the ``mcr.commands`` entry point (pyproject.toml), so another installed package adds
its own command the same way; this module assembles them and turns a user's mistake into one line."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import sys
from typing import Sequence

from mcr.cli.options import PROG, CLIError
from mcr.errors import MCRError

__all__ = ["CLIError", "PROG", "build_parser", "main"]

GROUP = "mcr.commands"
# The built-in command groups in the order the help lists them; another package's come after, by name.
ORDER = (
    "run", "outputs", "tools", "doctor", "models", "memory", "library", "live", "analyze", "serve", "mcp", "m2la",
    "eval", "train",
)  # fmt: skip


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def commands() -> list[importlib.metadata.EntryPoint]:
    """The ``mcr.commands`` entry points, the built-in ones first in their order, then the others by name."""
    found = importlib.metadata.entry_points(group=GROUP)
    return sorted(found, key=lambda e: (ORDER.index(e.name) if e.name in ORDER else len(ORDER), e.name, e.value))


class Parser(argparse.ArgumentParser):
    """argparse's parser, saying a bad argument in one line (which command, what is wrong, where
    its help is) instead of the usage block; every subcommand's parser is one of these too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        print(f"{PROG}: error: {where}{message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Answer questions about long videos with an agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in commands():
        try:
            entry.load()(sub)
        except Exception as exc:  # noqa: BLE001 - one broken package's command must not take the others down
            reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{PROG}: warning: command {entry.name!r} ({entry.value}) is left out: {reason}", file=sys.stderr)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, ending a command the way Ctrl-C does (the run's trace says ``interrupted``)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument already said in one line
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except MCRError as exc:  # every error a user can cause and fix: one line, its exit code
        return _fail(exc.one_line(), exc.exit_code)
    except KeyboardInterrupt as exc:
        trace = getattr(exc, "trace", None)
        code = 143 if isinstance(exc, Terminated) else 130
        if trace is None:
            return _fail("interrupted", code)
        return _fail(f"interrupted; the run's trace is {trace}: continue it with `{PROG} resume {trace}`", code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
