"""Evaluation: benchmark adapters, a resumable parallel runner, metrics, rewards and trajectory export.

    from mcr.eval import AgentSpec, load_benchmark, resolve_videos, run_eval

    samples = resolve_videos(load_benchmark("videomme", "videomme/test-00000-of-00001.parquet"), "videos/")
    summary = run_eval(samples, AgentSpec(agent="mcr", model="openai:Qwen3-VL-8B@http://localhost:8000/v1"),
                       "results/videomme-mcr", workers=8)

The same from the command line: ``mcr-agent eval videomme --annotations ... --videos ...``.
Submodules load on first use, so importing ``mcr.eval`` stays cheap.
"""

from __future__ import annotations

from mcr.lazy import lazy_exports

_EXPORTS = {
    "Sample": ".samples",
    "EvalError": ".samples",
    "MissingVideos": ".samples",
    "resolve_videos": ".samples",
    "score": ".samples",
    "temporal_iou": ".samples",
    "BENCHMARKS": ".adapters",
    "load_benchmark": ".adapters",
    "summarize": ".metrics",
    "bootstrap_ci": ".metrics",
    "format_summary": ".metrics",
    "AgentSpec": ".runner",
    "run_eval": ".runner",
    "run_one": ".question",
    "read_results": ".results",
    "choice_reward": ".rewards",
    "temporal_iou_reward": ".rewards",
    "correctness_reward": ".rewards",
    "format_reward": ".rewards",
    "export": ".export",
    "report": ".summary",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
