"""What the commands print: one JSON document on stdout under --json, progress only on a
terminal's stderr, and a non-zero exit when an index stage fails."""

from __future__ import annotations

import json
from pathlib import Path

from procs import run_cli


def test_search_json_is_one_document_on_stdout(cut_video, tmp_path):
    found = run_cli("search", cut_video, "a test pattern", "-k", "2", "--json", cwd=tmp_path, timeout=300)
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)  # the whole of stdout, nothing before or after it
    assert doc["query"] == "a test pattern" and doc["results"]  # the cut video has text to match weakly
    assert "\r" not in found.stderr and "%" not in found.stderr  # not a terminal: no progress bars at all


def test_index_exits_non_zero_naming_the_stage_that_failed(cut_video, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(Path(cut_video).read_bytes())
    data[-100] ^= 0xFF  # inside the sample tables at the end: some packets of the middle shots break
    damaged.write_bytes(bytes(data))
    built = run_cli("index", damaged, "--stages", "shots", cwd=tmp_path)
    assert built.returncode == 1, built.stdout + built.stderr
    assert "shots: failed" in built.stdout and "indexed in" not in built.stdout
    (line,) = [x for x in built.stderr.splitlines() if x.startswith("mcr-agent: error:")]
    assert "index stage shots of" in line and "damaged.mp4" in line and "cannot be decoded" in line
    again = run_cli("index", cut_video, "--stages", "shots", cwd=tmp_path)
    assert again.returncode == 0 and "indexed in" in again.stdout
