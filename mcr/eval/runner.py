"""The evaluation runner: answers every question with a fresh agent, in parallel workers,
appending one result record per finished question, so a stopped run resumes where it was.

Layout of an output folder::

    run.json        what was run (benchmark, annotations, agent, model)
    results.jsonl   one record per finished question (see ``question.make_record``)
    traces/ID.jsonl the question's full trace (events, frames as references)
    turns/ID.jsonl  every model call of the question: the rendered messages, tools and reply
    summary.json    the metrics (written at the end and by ``eval report``)

A question's trace and turns are written before its record, so a record always has them.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mcr.files import write_text

from .question import Factory, Recorder, make_record, run_one, safe_name
from .results import ResultsWriter, read_results, results_path
from .samples import EvalError, Sample

# ------------------------------------------------------------------ agents

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(
    spec: str | None, endpoint: str | None = None, device: str = "auto", options: dict | None = None
) -> Any:
    """A model loaded once per process and shared by the workers (``replay:`` models are per question)."""
    from mcr.models import load_model

    kwargs = {"device": device, **(options or {})}
    if spec is not None and str(spec).strip().startswith("replay:"):
        return load_model(spec, endpoint=endpoint, **kwargs)
    key = json.dumps([spec, endpoint, kwargs], sort_keys=True, default=str)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(spec, endpoint=endpoint, **kwargs)
        return _MODELS[key]


@dataclass
class AgentSpec:
    """How each question's agent is built; plain data, so Ray workers can build their own.

    ``memory``: ``question`` (a fresh memory and video index per question: nothing carries
    over between questions), ``video`` (one memory per video under ``OUT/memory``: the index is
    reused and earlier answers about the video are visible), or ``none``.
    """

    agent: str = "mcr"  # mcr | plain | baseline
    model: str | None = None
    endpoint: str | None = None
    max_steps: int = 12
    max_wall_s: float | None = None
    frames: int = 32  # the baseline's uniformly sampled frames
    memory: str = "question"
    index: tuple[str, ...] = ("shots",)
    device: str = "auto"
    model_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.agent not in ("mcr", "plain", "baseline"):
            raise EvalError(f"unknown agent {self.agent!r}: mcr, plain or baseline")
        if self.memory not in ("question", "video", "none"):
            raise EvalError(f"unknown memory mode {self.memory!r}: question, video or none")
        self.index = tuple(self.index)

    def __call__(self, sample: Sample, work: Path, out_dir: Path | None = None) -> Any:
        from mcr.agents import Agent, BaselineAgent

        model = shared_model(self.model, self.endpoint, self.device, self.model_options)
        if self.memory == "none":
            memory: Any = False
        elif self.memory == "video" and out_dir is not None:
            folder = Path(out_dir) / "memory"
            folder.mkdir(parents=True, exist_ok=True)
            memory = folder / f"{safe_name(sample.video)}.db"
        else:
            memory = work / "memory.db"
        common = dict(memory=memory, index=self.index, trace_dir=False, work_dir=work / "work", device=self.device)
        if self.agent == "baseline":
            return BaselineAgent(model, frames=self.frames, **common)
        return Agent(model, max_steps=self.max_steps, max_wall_s=self.max_wall_s, policy=self.agent, **common)

    def to_dict(self) -> dict:
        return {**asdict(self), "index": list(self.index)}


# ------------------------------------------------------------------ the run

RUN_FILE = "run.json"


def _check_run_file(out: Path, config: dict) -> None:
    path = out / RUN_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old.get("benchmark") and config.get("benchmark") and old["benchmark"] != config["benchmark"]:
            raise EvalError(f"{out} holds results of {old['benchmark']}, not {config['benchmark']}; pass another --out")
    path.write_text(
        json.dumps({**config, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2, default=str), encoding="utf-8"
    )


class _Sink:
    """Writes each finished question: trace and turns first, then its record; keeps the running score."""

    def __init__(
        self,
        out: Path,
        writer: ResultsWriter,
        done: dict[str, dict],
        total: int,
        on_record: Callable[[dict, "_Sink"], None] | None,
    ) -> None:
        self.out, self.writer, self.on_record = out, writer, on_record
        self.done = dict(done)
        self.total = total
        self.new = 0
        (out / "traces").mkdir(parents=True, exist_ok=True)
        (out / "turns").mkdir(parents=True, exist_ok=True)

    def __call__(self, outcome: dict) -> None:
        record = outcome["record"]
        for kind in ("trace", "turns"):
            write_text(self.out / record[kind], outcome.get(kind) or "")
        self.writer.append(record)
        self.done[str(record["id"])] = record
        self.new += 1
        if self.on_record is not None:
            self.on_record(record, self)

    @property
    def accuracy(self) -> tuple[int, int]:
        scored = [r for r in self.done.values() if r.get("correct") is not None and r.get("form") != "span"]
        return sum(1 for r in scored if r["correct"]), len(scored)


def plan(
    samples: Sequence[Sample], done: dict[str, dict], limit: int | None = None, retry_errors: bool = False
) -> tuple[list[Sample], list[Sample]]:
    """(selected, to run): the first ``limit`` samples, and those of them not finished yet."""
    selected = list(samples[:limit] if limit else samples)
    todo = [s for s in selected if s.id not in done or (retry_errors and done[s.id].get("status") == "error")]
    return selected, todo


def run_eval(
    samples: Sequence[Sample],
    factory: Factory,
    out_dir: str | Path,
    workers: int = 1,
    limit: int | None = None,
    retry_errors: bool = False,
    progress: bool = False,
    config: dict | None = None,
    ray_address: str | None = None,
    on_record: Callable[[dict, Any], None] | None = None,
) -> dict:
    """Run (or resume) an evaluation; returns the summary of the selected questions."""
    from .metrics import summarize

    if workers < 1:
        raise EvalError("--workers must be 1 or more")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_run_file(out, dict(config or {}))
    path = results_path(out)
    with ResultsWriter(path) as writer:  # opening cuts off a line torn by a killed run
        done = read_results(path)
        selected, todo = plan(samples, done, limit, retry_errors)
        sink = _Sink(out, writer, {k: v for k, v in done.items()}, len(selected), on_record)
        bar = _progress_bar(len(selected), len(selected) - len(todo), sink) if progress else None
        try:
            if bar is not None:
                bar.start()
            if ray_address:
                from .ray_runner import run_on_ray

                run_on_ray(todo, factory, out, sink, ray_address, workers)
            elif workers == 1:
                for s in todo:
                    sink(run_one(factory, s, out))
            else:
                _run_threads(todo, factory, out, sink, workers)
        finally:
            if bar is not None:
                bar.stop()
    ids = {s.id for s in selected}
    records = [r for k, r in read_results(path).items() if k in ids]
    summary = summarize(records)
    summary["ran"] = sink.new
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _run_threads(todo: list[Sample], factory: Factory, out: Path, sink: _Sink, workers: int) -> None:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcr-eval")
    queue = list(reversed(todo))
    running: set = set()
    try:
        while queue or running:
            while queue and len(running) < workers:
                running.add(pool.submit(run_one, factory, queue.pop(), out))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                sink(f.result())
    finally:  # on an interrupt, questions not started are dropped; finished ones are already written
        pool.shutdown(wait=True, cancel_futures=True)


def _progress_bar(total: int, already: int, sink: _Sink):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task("eval", total=total, completed=already, acc=_acc_text(sink))
    previous = sink.on_record

    def update(record: dict, s: _Sink) -> None:
        progress.update(task, advance=1, acc=_acc_text(s))
        if previous is not None:
            previous(record, s)

    sink.on_record = update
    return progress


def _acc_text(sink: _Sink) -> str:
    right, scored = sink.accuracy
    return f"acc {100 * right / scored:.1f}% ({right}/{scored})" if scored else "acc -"


__all__ = ["AgentSpec", "Recorder", "make_record", "plan", "run_eval", "run_one", "safe_name", "shared_model"]
