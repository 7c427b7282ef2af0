"""Searching a library: six test-made videos (speech by espeak-ng, drawn text), indexed by
``mcr-agent index DIR``, each question answered in exactly one of them; the vectors on disk
beside the database, reused by a later process; filters applied inside the vector search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from libraries import LIBRARY, cli, indexed_library

from mcr.memory import Memory, MemoryEntry
from mcr.memory.ann import RECORD, DiskIVF
from mcr.memory.vectors import StoreVectors, vectors_folder

# every question below has its answer in one video of the library only
QUESTIONS = [
    ("melt the chocolate", "kitchen", (1.0, 5.0)),
    ("basil pesto", "kitchen", (9.0, 15.0)),
    ("Fourier transform", "physics", (1.0, 5.0)),
    ("Ohms law", "physics", (9.0, 15.0)),
    ("drop the beta release", "meeting", (1.0, 5.0)),
    ("budget review", "meeting", (9.0, 15.0)),
    ("tomato seedlings", "garden", (1.0, 5.0)),
    ("compost bins", "garden", (9.0, 15.0)),
    ("the ferry to the island", "harbor", (1.0, 5.0)),
    ("lighthouse tours", "harbor", (9.0, 15.0)),
    ("the knight forks the king", "chess", (1.0, 5.0)),
    ("endgame puzzles", "chess", (9.0, 15.0)),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return indexed_library(tmp_path_factory.mktemp("library"))


def _overlaps(span, want) -> bool:
    return span[0] <= want[1] and span[1] >= want[0]


@pytest.mark.slow
def test_search_over_a_folder_puts_the_right_video_and_span_first(library):
    from mcr.library.search import search_library

    folder, db = library
    memory = Memory(db)
    for query, name, want in QUESTIONS:
        found = search_library([str(folder)], query, memory, k=3, device="cpu")
        top = found["results"][0]
        assert Path(top["video"]).stem == name, (query, found["results"])
        assert _overlaps(top["span"], want), (query, top)
        assert not top["weak"] and top["shares"], top
    assert found["videos"] == len(LIBRARY) and not found["not_indexed"]
    done = cli("search", str(folder / "*.mp4"), "Fourier transform", "-k", "2", "--json", "--memory", str(db))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    first = out["results"][0]
    assert Path(first["video"]).stem == "physics" and len(first["video_id"]) > 8
    assert _overlaps(first["span"], (1.0, 5.0)) and isinstance(first["score"], float)


@pytest.mark.slow
def test_vectors_are_kept_on_disk_and_a_later_process_does_not_rebuild_them(library):
    _, db = library
    folder = vectors_folder(db)
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != "lock"}
    assert any(p.name == "state.npz" for p in files), sorted(files)  # written by the index command
    code = (
        "import sys; from mcr.memory import Memory; m = Memory(sys.argv[1]); "
        "print(m.search('melt the chocolate', k=1)[0].entry.text)"
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "chocolate" in done.stdout.lower()
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == files  # nothing written: the index was read as it was


class Toy:
    """Unit vectors by hash: a stand-in encoder for a test about the vector store, not meaning."""

    name, dim = "toy", 32

    def encode(self, texts):
        out = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]
        return np.array([v / np.linalg.norm(v) for v in out], dtype=np.float32)


def test_filters_apply_inside_the_search_even_when_other_videos_dominate(tmp_path):
    rng = np.random.default_rng(0)
    query = rng.standard_normal(Toy.dim).astype(np.float32)
    query /= np.linalg.norm(query)
    memory = Memory(tmp_path / "m.db", encoder=Toy())
    near = query + 0.3 * rng.standard_normal((30_000, Toy.dim)).astype(np.float32)  # crowding the query
    far = -query + 0.3 * rng.standard_normal((12, Toy.dim)).astype(np.float32)  # the one video's: far from it
    vecs = np.concatenate([near, far])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    entries = [MemoryEntry(f"e{i}", "transcript", video_id=f"v{i % 80}") for i in range(len(near))]
    entries += [MemoryEntry(f"small {i}", "ocr", video_id="small") for i in range(len(far))]
    memory.store.add_many(entries, embeddings=vecs, encoder="toy")
    vectors = StoreVectors(memory.store, "entry:toy", Toy.dim)
    assert vectors.sync() == len(vecs) and vectors.ivf.state()["centroids"] is not None  # approximate now
    recs, scores, videos = vectors.search(query, 10, video_ids=["small"])
    assert len(recs) == 10 and {videos[c] for c in recs["video"]} == {"small"}
    recs, scores, videos = vectors.search(query, 10, kinds=["ocr"])  # inside the index's scan
    assert len(recs) == 10 and {videos[c] for c in recs["video"]} == {"small"}
    hits = memory.search("anything", video_id="small", k=10)
    assert len(hits) == 10 and {h.entry.video_id for h in hits} == {"small"}
    assert np.all(np.diff(scores) <= 1e-6)


def test_a_writer_that_died_mid_append_leaves_nothing_a_reader_sees(tmp_path):
    ivf = DiskIVF(tmp_path / "c", 8, exact_below=1000)
    rec = np.zeros(5, RECORD)
    rec["ref"] = np.arange(5)
    with ivf.locked():
        ivf.add(np.eye(8, dtype=np.float32)[:5], rec)
    with open(tmp_path / "c" / "L0.vec", "ab") as f:  # a torn tail: rows written, never committed
        f.write(np.ones((3, 8), np.float32).tobytes()[:50])
    reader = DiskIVF(tmp_path / "c", 8, exact_below=1000)
    got, _ = reader.search(np.ones(8, np.float32), 10)
    assert sorted(got["ref"]) == [0, 1, 2, 3, 4]
    with ivf.locked():
        ivf.add(np.eye(8, dtype=np.float32)[5:6], rec[:1])
    got, _ = reader.search(np.eye(8, dtype=np.float32)[5], 1)
    assert len(reader) == 6 and got["ref"][0] == 0 and (tmp_path / "c" / "L0.vec").stat().st_size == 6 * 8 * 4
