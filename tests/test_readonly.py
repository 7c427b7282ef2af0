"""A memory database that cannot be written: read where reading suffices, refused in one line
where a write is needed. Two ways to be read-only, both real: the file made immutable
(``chattr +i``, which holds even for root) and its folder mounted read-only (a private
mount namespace, ``unshare -m``)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from media import shared_clip
from procs import run_cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "scripts" / "boats.json"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A memory database holding megamind.mp4's transcript index."""
    folder = tmp_path_factory.mktemp("ro") / "db"
    folder.mkdir()
    db = folder / "memory.db"
    built = run_cli("index", shared_clip("megamind.mp4"), "--stages", "transcript", "--memory", db, timeout=300)
    assert built.returncode == 0, built.stderr
    assert not Path(f"{db}-wal").exists()  # closed cleanly: the file alone holds everything
    return db


def cli_readonly(how: str, db: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``mcr-agent ARGS`` while ``db`` cannot be written (``how``: "file" or "folder")."""
    if how == "file":
        made = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"this file system cannot make a file immutable: {made.stderr.strip()}")
        try:
            return run_cli(*args, timeout=timeout, cwd=db.parent.parent)
        finally:
            subprocess.run(["chattr", "-i", str(db)], check=True)
    folder = shlex.quote(str(db.parent))
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "mcr.cli.main", *args])
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {folder} {folder} && exec {command}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=db.parent.parent,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"},
    )


def one_line_refusal(out: subprocess.CompletedProcess, db: Path) -> str:
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write to the memory database {db}" in lines[0], out.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "folder"])
def test_a_read_only_database_lists_and_searches_and_writes_are_refused(indexed, how):
    db = indexed
    listed = cli_readonly(how, db, "memory", "list", "--memory", db)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "transcript" in listed.stdout and "index:transcript" in listed.stdout
    found = cli_readonly(how, db, "memory", "search", "judge a book by its cover", "--memory", db)
    assert found.returncode == 0, found.stderr
    assert "cover" in found.stdout.splitlines()[0].lower()
    exported = cli_readonly(how, db, "memory", "export", "--memory", db)
    assert exported.returncode == 0 and all(json.loads(line)["kind"] for line in exported.stdout.splitlines())
    why = "the file is read-only" if how == "file" else f"its folder {db.parent} is read-only"
    ran = cli_readonly(how, db, "run", shared_clip("boats.mp4"), "What?", "--model", f"replay:{SCRIPT}", "--memory", db)
    assert why in one_line_refusal(ran, db)
    index = cli_readonly(how, db, "index", shared_clip("megamind.mp4"), "--stages", "shots", "--memory", db)
    assert why in one_line_refusal(index, db)
    cleared = cli_readonly(how, db, "memory", "clear", "--yes", "--memory", db)
    assert why in one_line_refusal(cleared, db)
    if how == "folder":  # a search over the video reads the index it holds and builds nothing in it
        video = shared_clip("megamind.mp4")
        searched = cli_readonly(how, db, "search", video, "judge a book", "--json", "--memory", db)
        assert searched.returncode == 0, searched.stderr
        assert json.loads(searched.stdout)["results"] and "is read-only" in searched.stderr
        assert "transcript" in json.loads(searched.stdout)["signals"]
