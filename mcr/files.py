"""Files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file to write ``path`` through: a temporary file beside it, renamed into place when
    the block ends without an error (and removed when it does not). A reader never sees the file
    half-written, and two writers (processes or threads) never share a temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` into ``path``, whole or not at all (see :func:`replacing`)."""
    with replacing(path) as f:
        f.write(text)
    return Path(path)


__all__ = ["replacing", "write_text"]
