"""Small PyTorch encoders on ONNX Runtime: the same numbers, a fraction of the overhead.

A text query is a dozen tokens through a few transformer layers; in eager PyTorch on a
CPU most of that time is spent between operators, which ONNX Runtime's fused graph does
not pay. :class:`BucketedGraphs` exports a module once per input length bucket (the
TorchScript exporter fixes the length; inputs are padded up to the bucket) to
``~/.cache/mcr/onnx/<name>-<fingerprint>-<length>.onnx`` (``$MCR_CACHE`` moves it;
written to a temporary file and renamed, so a killed export leaves nothing half-done),
and checks each graph against the module on a probe before using it. ``MCR_ONNX=0``
turns it off; without ``onnx`` and ``onnxruntime`` callers keep their PyTorch path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mcr.files import write_text


def available() -> bool:
    """ONNX Runtime can be used here (both packages installed, not turned off)."""
    if os.environ.get("MCR_ONNX") == "0":
        return False
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def cache_dir() -> Path:
    return Path(os.environ.get("MCR_CACHE") or Path.home() / ".cache" / "mcr") / "onnx"


def open_session(path: str | Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session of the graph at ``path`` with ``threads`` threads per call; idle
    workers sleep instead of spinning (an index runs other engines beside it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def manifest_entry(name: str, key: str) -> dict | None:
    """The entry ``key`` of the manifest ``name`` in the cache folder (None: none, or unreadable)."""
    import json

    path = cache_dir() / name
    try:
        entry = json.loads(path.read_text()).get(key) if path.exists() else None
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) else None


def manifest_put(name: str, key: str, entry: dict) -> None:
    """Set ``key`` in the manifest ``name``: under a lock (two processes recording at once both
    keep their entries) and written to a temporary file then renamed (never half-written)."""
    import fcntl
    import json

    path = cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            known = json.loads(path.read_text()) if path.exists() else {}
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
        known[key] = entry
        write_text(path, json.dumps(known, indent=1))


def fingerprint(module: Any, skip: tuple[str, ...] = ()) -> str:
    """A short digest of a module's weights: names, shapes and a strided sample of each tensor."""
    h = hashlib.blake2b(digest_size=12)
    for name, t in sorted(module.state_dict().items()):
        if name.startswith(skip):
            continue
        flat = t.detach().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()


class BucketedGraphs:
    """ONNX Runtime graphs of ``module``, one per length in ``buckets``.

    Args:
        module: a torch module whose inputs are ``(batch, length)`` tensors.
        name: a label for the cache files.
        key: the weights' fingerprint (see :func:`fingerprint`).
        probe: ``probe(length)`` -> the named input tensors of that length, batch 2,
            used to export and to check each graph.
        buckets: the lengths graphs are made for (for images: the one side length).
        threads: ONNX Runtime's threads per call.
    """

    def __init__(
        self, module: Any, name: str, key: str, probe: Callable[[int], dict], buckets: tuple[int, ...], threads: int = 1
    ):
        self.module, self.name, self.key, self.probe, self.buckets = module.eval(), name, key, probe, buckets
        self.threads = threads  # one for short queries; more for batches of images
        self.sessions: dict[int, Any] = {}
        self.lock = threading.Lock()

    def bucket(self, need: int) -> int | None:
        """The smallest bucket that holds ``need`` tokens, or None when none does."""
        return next((b for b in self.buckets if b >= need), None)

    def path(self, length: int) -> Path:
        """Where the graph for ``length`` is kept."""
        return cache_dir() / f"{self.name}-{self.key}-{length}.onnx"

    def session(self, length: int) -> Any:
        import torch

        with self.lock:
            if length in self.sessions:
                return self.sessions[length]
            inputs = self.probe(length)
            path = self.path(length)
            if not path.exists():
                self._export(inputs, path)
            session = open_session(path, self.threads)
            with torch.inference_mode():
                want = self.module(*inputs.values()).float().numpy()
            got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
            if got.shape != want.shape or not np.allclose(got, want, atol=1e-4, rtol=1e-3):
                raise RuntimeError(f"the ONNX graph of {self.name} does not match PyTorch")
            self.sessions[length] = session
            return session

    def run(self, inputs: dict, length: int) -> np.ndarray:
        """The module's output for ``inputs`` (arrays already ``length`` long)."""
        return self.session(length).run(None, {k: np.asarray(v) for k, v in inputs.items()})[0]

    def _export(self, inputs: dict, path: Path) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".part", dir=path.parent)
        os.close(fd)
        fast = torch.backends.mha.get_fastpath_enabled()
        try:
            torch.backends.mha.set_fastpath_enabled(False)  # its fused attention operator has no ONNX form
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    self.module,
                    tuple(inputs.values()),
                    tmp,
                    input_names=list(inputs),
                    output_names=["output"],
                    dynamic_axes={k: {0: "batch"} for k in inputs},
                    opset_version=17,
                    dynamo=False,
                )
            os.replace(tmp, path)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
            if os.path.exists(tmp):
                os.unlink(tmp)
