"""Processes the tests start: ``mcr-agent`` as a subprocess, the worker programs of
``tests/workers``, and ``transformers serve`` on 127.0.0.1 with a model folder, waited for until it
answers and stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

TESTS = Path(__file__).resolve().parent


def worker(name: str, *args) -> list[str]:
    """The command line that runs ``tests/workers/NAME.py`` with ``args`` in this interpreter."""
    return [sys.executable, str(TESTS / "workers" / f"{name}.py"), *map(str, args)]


def worker_env(**extra: str) -> dict:
    """This process's environment with tests/ on ``PYTHONPATH`` (a worker imports the tests' helpers
    as the tests do) and ``extra`` set."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_cli(*args, cwd=None, env_extra: dict | None = None, columns: int = 100, timeout: float = 180):
    """``mcr-agent ARGS`` in a subprocess (offline hub), its output captured as text."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": str(columns), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(root: Path, start_timeout: float = 90) -> Iterator[str]:
    """``transformers serve`` on a free port of 127.0.0.1, offline, with its own hub cache under
    ``root``; yields its base URL once ``/health`` answers (the test fails with the server's log
    if it does not), and stops it on exit."""
    (root / "hf" / "hub").mkdir(parents=True, exist_ok=True)
    port = free_port()
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"}
    with open(root / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("transformers serve did not start:\n" + (root / "serve.log").read_text()[-3000:])
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
