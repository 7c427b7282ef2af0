"""CLIP weights for the benchmarks when no trained ones are on the machine: an open_clip folder
holding a model with random weights, whose cost is that of the real model (the scores are not)."""

from __future__ import annotations

import json
from pathlib import Path


def random_clip_folder(folder: Path, model: str = "ViT-B-32") -> Path:
    """An open_clip folder holding ``model`` with random weights (for timing only)."""
    if (folder / "open_clip_pytorch_model.bin").exists():
        return folder
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg = open_clip.get_model_config(model)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    net = open_clip.create_model(f"local-dir:{folder}")
    torch.save(net.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder
