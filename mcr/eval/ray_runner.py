"""Questions spread over a Ray cluster: one Ray task per question, results written by the driver.

Each task builds its own agent from the (picklable) ``AgentSpec`` on the node it lands on,
answers in a scratch folder there, and returns the record with the trace and turns as
text; the driver appends them to the same resumable output as the local runner. So the
output folder needs to exist only where the driver runs. Video paths must be readable on
every node (a shared file system, or the same layout on each machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .question import make_record, run_one
from .samples import EvalError, Sample


def _task(factory: Any, sample: dict, out_dir: str | None) -> dict:
    return run_one(factory, Sample.from_dict(sample), out_dir)


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start a
    local instance for ``local``. Returns whether this call started Ray (and so should stop it)."""
    try:
        import ray
    except ImportError:
        raise EvalError("--ray needs Ray: pip install 'mcr-agent[eval]'") from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address == "local":
        ray.init(num_cpus=num_cpus, **kwargs)
    else:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise EvalError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return True


def run_on_ray(
    todo: Sequence[Sample],
    factory: Any,
    out: Path,
    sink: Callable[[dict], None],
    address: str,
    workers: int = 1,
    cpus_per_task: float = 1.0,
) -> None:
    """Run ``todo`` as Ray tasks; ``sink`` gets each outcome as it finishes. At most ``workers``
    tasks are in flight from this driver at a time (more than the cluster's CPUs just queue)."""
    import ray

    started = connect(address, num_cpus=max(workers, 1) if address == "local" else None)
    try:
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_task)
        factory_ref = ray.put(factory)
        queue = list(reversed(todo))
        running: dict = {}
        shared_out = str(out)
        while queue or running:
            while queue and len(running) < max(1, workers):
                sample = queue.pop()
                running[remote.remote(factory_ref, sample.to_dict(), shared_out)] = sample
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                sample = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the task itself died (a lost node, a killed worker)
                    outcome = {
                        "record": make_record(
                            sample,
                            error=f"ray task failed: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}",
                        )
                    }
                sink(outcome)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


__all__ = ["connect", "run_on_ray"]
