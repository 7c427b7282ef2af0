"""What the commands of ``mcr-agent`` share, written once: the model options (``--model``,
``--endpoint``, ``--device``, ``--memory``, ``--no-memory``) and what they load, the program's
name, and the error for an argument the user can fix.

A command passes its own help text and defaults; the options themselves are declared here only.
Nothing heavy is imported at module level: every command's module imports this one at start.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from mcr.errors import MCRError

PROG = "mcr-agent"
DEVICES = ("auto", "cpu", "cuda")
MODEL_HELP = "hub id, local model folder or .gguf, openai:MODEL@URL, or replay:FILE"
ENDPOINT_HELP = "an OpenAI-compatible server for --model"
DEVICE_HELP = "device for local models"
MEMORY_HELP = "memory database (default .mcr/memory.db)"


class CLIError(MCRError):
    """A command-line argument the user can fix (a tools file, an empty question...)."""


def positive(value: str) -> float:
    """An argument that is a number of seconds (or another amount) above 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {value}")
    return number


def count(value: str) -> int:
    """An argument that counts something: a whole number, 0 or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return number


def at_least_one(value: str) -> int:
    """An argument that counts something there must be one of at least."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return number


def output_folder(path: str | Path, what: str) -> Path:
    """``path`` as the folder a command writes ``what`` into, checked before any work: a file
    there (or on the way there) is the user's mistake, said in one line."""
    folder = Path(path)
    for place in (folder, *folder.parents):
        if place.exists() and not place.is_dir():
            raise CLIError(f"{place} is a file, not a folder: name a folder for {what} (it is made if missing)")
    return folder


def wide_console(stderr: bool = False) -> Any:
    """A rich console as wide as the terminal, and unbounded when the output is piped or
    redirected (rich would cut tables to 80 columns there, and a program reading them loses text)."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 1000)


def add_model_options(
    parser: argparse.ArgumentParser,
    help: str = MODEL_HELP,
    *,
    required: bool = False,
    endpoint: str | None = ENDPOINT_HELP,
    device: str | None = None,
    memory: str | None = MEMORY_HELP,
    no_memory: str | None = None,
    dest: str = "model",
) -> None:
    """``--model`` with ``help``, then ``--endpoint``, ``--device`` and ``--memory`` (``--no-memory``)
    where their help is given (None leaves one out). A ``dest`` other than ``model`` names a model
    of a narrower role (``caption_model``: ``--caption-model``) that ``--model`` also sets."""
    own = () if dest == "model" else ("--" + dest.replace("_", "-"),)
    parser.add_argument(
        *own,
        "--model",
        dest=dest,
        default=None,
        required=required,
        metavar=None if dest == "model" else "SPEC",
        help=help,
    )
    if endpoint:
        parser.add_argument("--endpoint", default=None, metavar="URL", help=endpoint)
    if device:
        add_device_option(parser, device)
    if memory:
        add_memory_option(parser, memory, no_memory=no_memory)


def add_device_option(
    parser: argparse.ArgumentParser,
    help: str = DEVICE_HELP,
    *,
    default: str = "auto",
    choices: Sequence[str] | None = DEVICES,
) -> None:
    """``--device``: where local models run (``choices=None`` also takes a torch device such as ``cuda:1``)."""
    parser.add_argument("--device", default=default, choices=choices, help=help)


def add_memory_option(
    parser: argparse.ArgumentParser,
    help: str = MEMORY_HELP,
    *,
    no_memory: str | None = None,
    default: str | None = None,
    choices: Sequence[str] | None = None,
) -> None:
    """``--memory``: a memory database (or, with ``choices``, how memory is kept), and ``--no-memory``
    where its help is given."""
    parser.add_argument("--memory", default=default, choices=choices, metavar=None if choices else "FILE", help=help)
    if no_memory:
        parser.add_argument("--no-memory", action="store_true", help=no_memory)


def model_from(
    args: argparse.Namespace, fallback: str | None = None, *, optional: bool = False, background: bool = True, **options
) -> Any:
    """The model the options name (``fallback`` without ``--model``), loaded on ``--device`` where
    the command has one. A local model's weights load in the background by default, while the
    command goes on (the spec is still checked at once, so a missing model fails here).
    ``optional``: None when neither ``--model`` nor ``--endpoint`` is given."""
    spec = getattr(args, "model", None) or fallback
    endpoint = getattr(args, "endpoint", None)
    if optional and not (spec or endpoint):
        return None
    from mcr.models import load_model

    if getattr(args, "device", None) is not None:
        options.setdefault("device", args.device)
    return load_model(spec, endpoint=endpoint, background=background, **options)


def memory_from(args: argparse.Namespace, fallback: Any = None) -> Any:
    """The memory the options name: False under ``--no-memory``, else ``--memory`` or ``fallback``
    (None: the default database)."""
    if getattr(args, "no_memory", False):
        return False
    return getattr(args, "memory", None) or fallback
