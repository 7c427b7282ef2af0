"""Training the agent: GRPO and GSPO on MCR episodes (TRL), and SFT on verified trajectories.

Nothing heavy is imported until a function is used.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "EnvConfig": "environment",
    "Episodes": "environment",
    "dataset_rows": "environment",
    "EpisodeModel": "episode",
    "episode_sample": "episode",
    "REWARDS": "rewards",
    "train_rl": "run",
    "train_sft": "sft",
    "TrainError": "run",
    "plot_curves": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcr.train' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
