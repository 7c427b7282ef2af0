"""``mcr-agent index`` over a library: a folder of five test-made videos, one of them not a
video, with two local workers and then on a local Ray instance; the bad one is reported and
the rest are indexed once, and a second run reuses them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from media import make_bad_file, make_cue_video
from procs import run_cli

from mcr.library.build import find_videos

pytestmark = pytest.mark.slow

STAGES = "shots,transcript"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    sentences = ["The ferry leaves at noon.", "Bring a warm coat.", "The museum opens late.", "Trains are slow today."]
    for i, said in enumerate(sentences):
        make_cue_video(folder / f"clip{i}.mp4", spoken=((0.5, said),), drawn=(), seconds=4.0, size="160x120", rate=5)
    make_bad_file("text", folder / "broken", folder / "clip0.mp4")  # broken/text.mp4: not a video
    for stray in folder.rglob("*_speech"):  # the spoken sentences' WAV files are not part of the library
        for f in stray.iterdir():
            f.unlink()
        stray.rmdir()
    return folder


def stored(db: Path) -> dict[str, int]:
    """Index entries per video (by path) and stage."""
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT v.path, e.source, COUNT(*) FROM entries e JOIN videos v ON v.video_id = e.video_id "
            "GROUP BY v.path, e.source"
        ).fetchall()
    return {f"{Path(p).name} {s}": n for p, s, n in rows}


def check_outcome(done, db: Path) -> None:
    assert done.returncode == 1, done.stdout + done.stderr  # one video failed
    assert "Traceback" not in done.stderr
    assert "4 indexed, 0 reused, 1 failed" in done.stdout, done.stdout
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("mcr-agent: error:")]
    assert "text.mp4" in line and "not a video" in line
    found = stored(db)
    assert sorted(k for k in found if k.endswith("index:transcript")) == [
        f"clip{i}.mp4 index:transcript" for i in range(4)
    ]
    assert all(n == 1 for k, n in found.items() if k.endswith("index:transcript")), found  # each sentence once


def test_find_videos_takes_files_folders_and_globs(library):
    assert len(find_videos([str(library)])) == 5
    assert [p.name for p in find_videos([str(library / "clip*.mp4")])] == [f"clip{i}.mp4" for i in range(4)]
    twice = find_videos([str(library / "clip0.mp4"), str(library / "clip0.mp4"), str(library / "broken")])
    assert [p.name for p in twice] == ["clip0.mp4", "text.mp4"]


@pytest.fixture(scope="module")
def local(library, tmp_path_factory):
    """The library indexed by two local workers: the run's outcome and its database."""
    db = tmp_path_factory.mktemp("local") / "memory.db"
    return run_cli("index", library, "--workers", "2", "--stages", STAGES, "--memory", db, timeout=300), db


def searched(library: Path, db: Path, query: str) -> list[tuple[str, list[float], float]]:
    done = run_cli("search", library, query, "-k", "3", "--json", "--memory", db, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [(Path(r["video"]).name, r["span"], round(r["score"], 4)) for r in json.loads(done.stdout)["results"]]


def test_a_folder_with_two_workers_then_reused(library, local):
    done, db = local
    check_outcome(done, db)
    before = stored(db)
    again = run_cli("index", library, "--workers", "2", "--stages", STAGES, "--memory", db, timeout=300)
    assert "0 indexed, 4 reused, 1 failed" in again.stdout, again.stdout
    assert stored(db) == before  # nothing added by the second run


@pytest.mark.slow
def test_a_folder_on_a_local_ray_instance(library, local, tmp_path):
    db = tmp_path / "memory.db"
    done = run_cli(
        "index", library, "--ray", "local", "--workers", "2", "--stages", STAGES, "--memory", db, timeout=400
    )
    check_outcome(done, db)
    again = run_cli("index", library, "--ray", "local", "--stages", STAGES, "--memory", db, timeout=400)
    assert "0 indexed, 4 reused, 1 failed" in again.stdout, again.stdout
    for query, clip in (("the ferry leaves at noon", "clip0.mp4"), ("a warm coat", "clip1.mp4")):
        on_ray = searched(library, db, query)  # the same spans and scores as the library indexed locally
        assert on_ray == searched(library, local[1], query) and on_ray[0][0] == clip, on_ray
