"""Named libraries: two test-made videos (speech by espeak-ng, drawn text) indexed by
``mcr-agent index ... --library talks`` (one alone, then their folder), then searched and asked
by that name; an unknown name, a video moved away and two processes adding to one name at once."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3

import pytest
from libraries import cli, make_library

from mcr.agents import Agent
from mcr.memory.store import MemoryStore, NamedLibraryError
from mcr.run.policy import Policy
from mcr.run.testing import ScriptedModel, answer, tool_call

NAMES = ("kitchen", "physics")
CITED = {"video": "physics.mp4", "span": "00:00:01.0-00:00:05.0"}


@pytest.fixture(scope="module")
def talks(tmp_path_factory):
    root = tmp_path_factory.mktemp("named")
    folder = make_library(root / "videos", NAMES)
    db = root / "memory.db"
    common = ("--stages", "transcript,ocr", "--memory", str(db), "--quiet", "--library", "talks")
    one = cli("index", str(folder / "kitchen.mp4"), *common)  # one video, then the folder: both record
    assert one.returncode == 0 and "library talks: 1 videos (1 added)" in one.stdout, one.stdout + one.stderr
    both = cli("index", str(folder), *common)
    assert both.returncode == 0 and "library talks: 2 videos (1 added)" in both.stdout, both.stdout + both.stderr
    return folder, db


@pytest.mark.slow
def test_search_by_name_puts_the_right_video_first(talks):
    folder, db = talks
    for query, name in (("Fourier transform", "physics"), ("basil pesto", "kitchen")):
        done = cli("search", "--library", "talks", query, "-k", "2", "--json", "--memory", str(db))
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["videos"] == 2 and not out["not_indexed"], out
        assert out["results"][0]["video"] == str(folder / f"{name}.mp4"), (query, out["results"])
    listed = cli("library", "list", "--memory", str(db))
    assert listed.returncode == 0 and "talks: 2 videos" in listed.stdout, listed.stdout + listed.stderr
    shown = cli("library", "show", "talks", "--memory", str(db))
    assert shown.returncode == 0, shown.stderr
    for name in NAMES:
        line = next(x for x in shown.stdout.splitlines() if x.startswith(str(folder / f"{name}.mp4")))
        assert "index: ocr, transcript" in line, shown.stdout


@pytest.mark.slow
def test_run_by_name_with_a_scripted_model_is_verified(talks, tmp_path):
    folder, db = talks
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {"tool": "library_search", "arguments": {"query": "Fourier transform", "k": 2}},
                {"tool": "inspect_frames", "arguments": CITED},
                {"answer": "The Fourier transform turns a signal into its frequencies.", "evidence": [CITED]},
            ]
        )
    )
    question = "What is said about the Fourier transform?"
    options = ("--memory", str(db), "--index", "transcript,ocr", "--trace-dir", str(tmp_path), "--device", "cpu")
    done = cli("run", "--library", "talks", question, "--model", f"replay:{script}", *options, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "verified" and out["evidence_videos"] == ["physics.mp4"], out
    # the same from Python, and the run's overview names exactly the library's two videos
    model = ScriptedModel(
        [
            tool_call("library_search", query="Fourier transform", k=2),
            tool_call("inspect_frames", **CITED),
            answer("The Fourier transform turns a signal into its frequencies.", evidence=[CITED]),
        ]
    )
    policy = Policy(reflect_every=0)
    agent = Agent(model=model, memory=db, index=("transcript", "ocr"), trace_dir=tmp_path, device="cpu", policy=policy)
    result = agent.run(library="talks", question=question)
    model.assert_complete()
    assert result.status == "verified" and result.evidence_videos == ["physics.mp4"], result
    overview = next(e.text for e in agent.last_context.entries if e.kind == "perception")
    assert "library of 2 videos" in overview and "kitchen.mp4" in overview and "physics.mp4" in overview
    with pytest.raises(ValueError, match="not both"):
        agent.run(str(folder), question, library="talks")


@pytest.mark.slow
def test_an_unknown_name_is_one_line_naming_the_known_ones(talks):
    _, db = talks
    for command in (("search", "--library", "talkz", "q"), ("run", "--library", "talkz", "q?", "--model", "replay:x")):
        done = cli(*command, "--memory", str(db))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "no library named 'talkz'" in lines[0] and "talks" in lines[0].split(";")[1], lines
    gone = cli("library", "remove", "talkz", "--memory", str(db))
    assert gone.returncode == 2 and "the libraries there: talks" in gone.stderr
    with pytest.raises(NamedLibraryError, match="the libraries there: talks"):
        Agent(model=ScriptedModel([]), memory=db, trace_dir=False).run(library="talkz", question="q?")


@pytest.mark.slow
def test_a_moved_video_is_reported_and_the_others_are_asked(talks, tmp_path):
    folder, db = talks
    copies = tmp_path / "copies"
    shutil.copytree(folder, copies)
    made = cli("index", str(copies), "--stages", "transcript,ocr", "--memory", str(db), "--library", "moving")
    assert made.returncode == 0 and "library moving: 2 videos (2 added)" in made.stdout, made.stdout + made.stderr
    (copies / "kitchen.mp4").rename(tmp_path / "elsewhere.mp4")
    shown = cli("library", "show", "moving", "--memory", str(db))
    assert f"{copies / 'kitchen.mp4'}" in shown.stdout and "MOVED OR DELETED" in shown.stdout, shown.stdout
    done = cli("search", "--library", "moving", "basil pesto", "--json", "--memory", str(db))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "left out of library 'moving'" in done.stderr and str(copies / "kitchen.mp4") in done.stderr
    out = json.loads(done.stdout)
    assert out["videos"] == 1 and {r["video"] for r in out["results"]} == {str(copies / "physics.mp4")}
    (copies / "physics.mp4").unlink()
    none = cli("search", "--library", "moving", "basil pesto", "--memory", str(db))
    assert none.returncode == 2 and "Traceback" not in none.stderr
    assert "none of the 2 videos of library 'moving' is where it was indexed" in none.stderr.strip()
    removed = cli("library", "remove", "moving", "--memory", str(db))
    assert removed.returncode == 0 and "2 videos" in removed.stdout
    assert [lib["name"] for lib in MemoryStore(db, readonly=True).libraries()] == ["talks"]


def _add_one_by_one(db: str, who: str, n: int, start) -> int:
    start.wait()
    store = MemoryStore(db)
    return sum(store.add_to_library("shared", [(f"{who}{i}", f"/videos/{who}{i}.mp4")]) for i in range(n))


def test_two_processes_adding_to_one_name_at_once_both_land(tmp_path):
    db = str(tmp_path / "m.db")
    MemoryStore(db).add_to_library("shared", [("first", "/videos/first.mp4")])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            added = pool.starmap(_add_one_by_one, [(db, "a", 40, start), (db, "b", 40, start)])
    assert added == [40, 40]
    held = MemoryStore(db).library("shared")
    assert len(held) == 81 and len({v["video_id"] for v in held}) == 81
    assert MemoryStore(db).add_to_library("shared", [("a0", "/moved/a0.mp4")]) == 0  # a video is held once
    assert next(v for v in MemoryStore(db).library("shared") if v["video_id"] == "a0")["path"] == "/moved/a0.mp4"


def test_an_older_database_gains_the_table_and_read_only_has_no_libraries(tmp_path):
    db = tmp_path / "old.db"
    MemoryStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE libraries")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    assert MemoryStore(db, readonly=True).libraries() == []
    with pytest.raises(NamedLibraryError, match="holds none yet"):
        MemoryStore(db, readonly=True).library("talks")
    store = MemoryStore(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert store.add_to_library("talks", [("v", "/v.mp4")]) == 1 and store.libraries()[0]["videos"] == 1
