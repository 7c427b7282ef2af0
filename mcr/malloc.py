"""Fewer malloc arenas for processes that run several engines in threads at once.

glibc gives each thread that allocates while another holds the lock an arena of its own, up
to eight per core, and memory freed in one arena is not reused by threads of another. An index
build runs speech, on-screen text and frame embeddings in threads side by side, each making and
freeing buffers of tens of megabytes; with the default arenas its peak memory grew with the
video's length. Two arenas measured: a ten-minute build peaked at 1,704 MiB instead of 1,969,
at the same speed (``benchmarks/index_build.py``).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
_done = False


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``count`` for threads that have none yet (call before
    starting them). Left alone when ``MALLOC_ARENA_MAX`` is set (glibc read it at start) or the
    C library is not glibc. True when the cap was set."""
    global _done
    if _done or "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        _done = bool(libc.mallopt(M_ARENA_MAX, int(count)))
    except (OSError, AttributeError):
        return False
    return _done
