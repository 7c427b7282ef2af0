"""A model that loads in a background thread while the run probes the video and checks its index.

``LoadingModel`` stands for the model from the moment loading starts: its ``name`` is known at
once, ``ready`` says whether the weights are in, and anything else (``generate``,
``profile``, ``count_tokens``...) waits for the load and then comes from the loaded model. A
load that failed raises its error at the first such use, every time it is asked again.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class LoadingModel:
    """A model being loaded by ``load`` in a daemon thread."""

    def __init__(self, name: str, load: Callable[[], Any]) -> None:
        self.name = name
        self._load = load
        self._model: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self.started = time.perf_counter()
        self.seconds: float | None = None  # how long the load took, once it is over
        self._thread = threading.Thread(target=self._run, name=f"load {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._model = self._load()
        except BaseException as exc:  # kept and raised where the model is first used
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - self.started
            self._done.set()

    @property
    def ready(self) -> bool:
        """True once the load is over (loaded or failed)."""
        return self._done.is_set()

    def wait(self) -> Any:
        """The loaded model; waits for the load, raises its error if it failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._model

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.wait().generate(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # not the model's: keeps copy/pickle probes from waiting
            raise AttributeError(attr)
        return getattr(self.wait(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self.ready and self._error is None else "failed" if self.ready else "loading"
        return f"LoadingModel({self.name!r}, {state})"


__all__ = ["LoadingModel"]
