"""Training the agent: GRPO and GSPO on MCR episodes (TRL), and SFT on verified trajectories.

Nothing heavy is imported until a function is used.
"""

from __future__ import annotations

from mcr.lazy import lazy_exports

_EXPORTS = {
    "EnvConfig": ".environment",
    "Episodes": ".environment",
    "dataset_rows": ".environment",
    "EpisodeModel": ".episode",
    "episode_sample": ".episode",
    "REWARDS": ".rewards",
    "train_rl": ".run",
    "train_sft": ".sft",
    "TrainError": ".run",
    "plot_curves": ".run",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
