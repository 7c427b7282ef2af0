"""Files written whole or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` into ``path`` through a temporary file beside it, renamed into place: a reader
    never sees it half-written, and two writers (processes or threads) never share a temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = ["write_text"]
