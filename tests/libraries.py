"""A library of test-made videos for the library tests: six videos, each with one spoken sentence
(espeak-ng) and one drawn title, so that a question about either has its answer in one video
only; made in a folder and indexed there by ``mcr-agent index DIR`` as a user would."""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess
from typing import Iterable

from media import make_cue_video
from procs import run_cli

# video name -> (spoken cues, drawn cues)
LIBRARY = {
    "kitchen": ([(1.0, "Now we slowly melt the chocolate in a small pan.")], [(9.0, 15.0, "FRESH BASIL PESTO")]),
    "physics": ([(1.0, "The Fourier transform turns a signal into its frequencies.")], [(9.0, 15.0, "OHMS LAW")]),
    "meeting": ([(1.0, "We decided to drop the beta release this quarter.")], [(9.0, 15.0, "BUDGET REVIEW")]),
    "garden": ([(1.0, "Plant the tomato seedlings after the last frost.")], [(9.0, 15.0, "COMPOST BINS")]),
    "harbor": ([(1.0, "The ferry to the island leaves at noon.")], [(9.0, 15.0, "LIGHTHOUSE TOURS")]),
    "chess": ([(1.0, "The knight forks the king and the rook.")], [(9.0, 15.0, "ENDGAME PUZZLES")]),
}


def cli(*args, timeout: float = 600) -> CompletedProcess:
    """``mcr-agent ARGS``, with the time indexing a library takes on two cores."""
    return run_cli(*args, timeout=timeout)


def make_library(folder: Path, names: Iterable[str] = tuple(LIBRARY)) -> Path:
    """The videos ``names`` of :data:`LIBRARY` in ``folder`` (made if missing), 16 s each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        spoken, drawn = LIBRARY[name]
        make_cue_video(folder / f"{name}.mp4", spoken=spoken, drawn=drawn, seconds=16.0, size="480x270")
    return folder


def index_library(folder: Path, db: Path, timeout: float = 600) -> None:
    """``mcr-agent index FOLDER`` with the speech and on-screen text stages into ``db``."""
    done = cli("index", folder, "--stages", "transcript,ocr", "--memory", db, "--quiet", timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr


def indexed_library(root: Path) -> tuple[Path, Path]:
    """The whole library made in ``root/videos`` and indexed in ``root/memory.db``."""
    folder, db = make_library(root / "videos"), root / "memory.db"
    index_library(folder, db)
    return folder, db
