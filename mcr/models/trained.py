"""Folders a training run wrote, as models ``load_model`` takes.

* A training output folder (``mcr-agent train ... --out OUT``): its ``final/`` holds the trained
  model with its processor.
* A LoRA adapter folder (``adapter_config.json``: a checkpoint ``OUT/checkpoint-N`` or
  ``OUT/adapter``): merged into its base model once and kept under ``~/.cache/mcr/merged``
  (keyed by the adapter's weights), written whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .base import ModelError


def cache_root() -> Path:
    return Path(os.environ.get("MCR_CACHE") or Path.home() / ".cache" / "mcr")


def trained_folder(path: Path) -> Path | None:
    """The model folder a training folder or adapter stands for, or None when it is neither."""
    if (path / "config.json").is_file():
        return None
    if (path / "final" / "config.json").is_file():
        return path / "final"
    if (path / "adapter_config.json").is_file():
        return merged(path)
    return None


def _adapter_key(adapter: Path, base: str) -> str:
    h = hashlib.sha1(base.encode())
    for name in sorted(p.name for p in adapter.glob("adapter_model*")):
        st = (adapter / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def merged(adapter: Path) -> Path:
    """The base model with the LoRA adapter at ``adapter`` merged in, as a model folder."""
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{adapter}: unreadable adapter_config.json ({exc})") from None
    base = str(config.get("base_model_name_or_path") or "")
    if not base or not (Path(base) / "config.json").is_file():
        raise ModelError(
            f"{adapter} is a LoRA adapter whose base model {base or '(none named)'} is not on this machine; "
            "load the training folder's final/ model instead, or put the base model back at that path"
        )
    target = cache_root() / "merged" / _adapter_key(adapter, base)
    if (target / "config.json").is_file():
        return target
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelError("loading a LoRA adapter needs peft: pip install 'mcr-agent[train]'") from None
    from .local import TransformersModel

    model = TransformersModel(base, dtype="float32", device_map="cpu")
    weights = PeftModel.from_pretrained(model.model, str(adapter)).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        weights.save_pretrained(tmp)
        model.processor.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process merged it first: theirs is the same
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
