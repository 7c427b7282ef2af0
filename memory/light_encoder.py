"""The sentence encoder without sentence-transformers or torch: ONNX Runtime and ``tokenizers``.

The first time the full encoder (:class:`memory.encoder.SentenceEncoder`) runs on a CPU, it
exports its graphs (one per token-length bucket, up to the model's 256 tokens) and records
them in a manifest beside them, keyed by the model folder and its weights file's size and
time. A later process finds the manifest and encodes with the graphs and the folder's own
``tokenizer.json`` directly, in a fraction of a second instead of the seconds that importing
sentence-transformers (and torch and transformers through it) takes. If anything is missing
or changed, the full encoder is used.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# Token lengths with a graph each. Every graph's session holds its own copy of the weights (about
# 115 MiB for MiniLM), so few and coarse: encoding an index chunk's sentences touched four of a
# finer set (460 MiB); most text fits the first two of these.
BUCKETS = (32, 64, 128, 256)
MANIFEST = "sentence-manifest.json"


def _weights(folder: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def folder_key(folder: str | os.PathLike) -> str | None:
    """The folder and its weights' size and time: a new or changed model gets a new key."""
    folder = Path(folder).absolute()
    weights = _weights(folder)
    if weights is None:
        return None
    st = weights.stat()
    return f"{folder}|{st.st_size}|{st.st_mtime_ns}"


def record(folder: str | os.PathLike, fingerprint: str, name: str, dim: int, max_length: int, pad_id: int) -> None:
    """Note in the manifest that ``folder``'s graphs are exported under ``fingerprint``."""
    from mcr.onnxrun import manifest_put

    key = folder_key(folder)
    if key is not None:
        entry = {"fingerprint": fingerprint, "name": name, "dim": dim, "max_length": max_length, "pad_id": pad_id}
        manifest_put(MANIFEST, key, entry)


class LightEncoder:
    """``name``, ``dim`` and ``encode`` of a recorded model, on its exported graphs."""

    def __init__(self, folder: Path, entry: dict, graphs: dict[int, Path]) -> None:
        from tokenizers import Tokenizer

        self.folder, self.name, self.dim = folder, entry["name"], int(entry["dim"])
        self.pad_id = int(entry["pad_id"])
        self.graphs, self.sessions = graphs, {}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(entry["max_length"]))
        self.lock = threading.Lock()

    def _session(self, length: int) -> Any:
        from mcr.onnxrun import open_session

        with self.lock:
            if length not in self.sessions:
                self.sessions[length] = open_session(self.graphs[length])
            return self.sessions[length]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        rows = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(next(b for b in self.graphs if b >= len(r)), []).append(i)
        for length, idx in groups.items():
            ids = np.full((len(idx), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.int64)
            for j, i in enumerate(idx):
                ids[j, : len(rows[i])], mask[j, : len(rows[i])] = rows[i], 1
            out[idx] = self._session(length).run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out


def light_encoder(folder: str | os.PathLike | None) -> LightEncoder | None:
    """The light encoder of ``folder`` when its graphs were recorded and are all here, else None."""
    from importlib.util import find_spec

    from mcr.onnxrun import available, cache_dir, manifest_entry

    if folder is None or not available() or find_spec("tokenizers") is None:
        return None
    key = folder_key(folder)
    if key is None or not (Path(folder) / "tokenizer.json").is_file():
        return None
    entry = manifest_entry(MANIFEST, key)
    if not entry:
        return None
    graphs = {b: cache_dir() / f"sentence-{entry['fingerprint']}-{b}.onnx" for b in BUCKETS}
    if not all(p.is_file() for p in graphs.values()):
        return None
    try:
        return LightEncoder(Path(folder), entry, graphs)
    except Exception:  # noqa: BLE001 - a tokenizer that will not load: the full encoder
        return None
