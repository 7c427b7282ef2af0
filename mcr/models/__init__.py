"""The model protocol every backend follows, and ``load_model`` to pick one by name.

A model is any object with ``name`` and
``generate(messages, tools=None, **options) -> ModelOutput``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import Model, ModelError, ModelNotAvailable, ModelOutput
from .parse import ParsedText, parse_tool_calls, split_reasoning

DEFAULT_MODEL = "OpenGVLab/InternVideo3-8B-Instruct"


def _hub_snapshot(model_id: str) -> Path | None:
    """A local snapshot of a hub model in the Hugging Face cache, if one is there."""
    cache = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    folder = cache / ("models--" + model_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return None
    for snap in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if (snap / "config.json").exists():
            return snap
    return None


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_model() -> str:
    """``$MCR_MODEL``, else the documented default that is on this machine:
    InternVideo3-8B-Instruct with a GPU, a small Qwen3-VL on CPU."""
    from .profiles import default_model_id

    chosen = os.environ.get("MCR_MODEL")
    if chosen:
        return chosen
    big, small = default_model_id(gpu=True), default_model_id(gpu=False)
    have_big, have_small = _hub_snapshot(big) is not None, _hub_snapshot(small) is not None
    if not have_big and not have_small:
        from .hub import offline, why_not_reachable

        if not offline() and why_not_reachable(small) is None:  # fetched on first use
            return big if _has_cuda() else small
        raise ModelNotAvailable(
            f"no default model is on this machine: {big} is not available offline (the default with a GPU), "
            f"nor is {small} (the default on CPU). Download one where the hub is reachable (`hf download {big}`), "
            "then pass --model /path/to/weights, or serve one and pass --endpoint URL"
        )
    if have_big and have_small:
        return big if _has_cuda() else small
    return big if have_big else small


def _split_openai(spec: str, endpoint: str | None) -> tuple[str | None, str]:
    body = spec[len("openai:") :]
    model, url = body, endpoint
    if "@" in body:
        head, _, tail = body.rpartition("@")
        if tail and ("://" in tail or ":" in tail or tail.startswith("localhost")):
            model, url = head, tail
    url = url or os.environ.get("MCR_ENDPOINT") or os.environ.get("OPENAI_BASE_URL")
    if not url:
        raise ModelError(f"{spec} names no server: write openai:MODEL@http://HOST:PORT/v1 or pass --endpoint URL")
    return (model or None), url


def load_model(spec: Any = None, endpoint: str | None = None, background: bool = False, **options: Any) -> Model:
    """A model from a spec.

    ``spec`` is an object with ``generate``; ``replay:FILE``; ``openai:MODEL@URL`` (or a
    served model's name with ``endpoint=URL``); a local model folder or ``.gguf`` file; or
    a hub id: from the local Hugging Face cache, a known package that ships it, or
    downloaded on first use (``mcr.models.hub.fetch``; not with ``HF_HUB_OFFLINE=1``). ``None`` picks :func:`default_model`. ``options`` go to the backend
    (``device``, ``constrain``, ``dtype``, ``timeout``...). A missing model raises
    ``ModelNotAvailable`` saying how to get it.

    With ``background=True`` a local model's weights load in a background thread
    (:class:`~mcr.models.background.LoadingModel`): the spec is checked and a hub model
    fetched first, so a missing model still fails here, and the call returns at once.
    """
    if not isinstance(spec, (str, type(None))):
        if callable(getattr(spec, "generate", None)):
            return spec
        raise ModelError(f"not a model: {spec!r} (pass an object with generate(), a hub id, a path or 'replay:FILE')")
    if spec is not None and spec.strip().startswith("replay:"):
        from .replay import ReplayModel

        return ReplayModel.from_file(spec.strip()[len("replay:") :])
    if spec is not None and spec.strip().startswith("openai:"):
        model, url = _split_openai(spec.strip(), endpoint)
        return _server_model(url, model, options)
    if endpoint:
        return _server_model(endpoint, spec.strip() if spec else None, options)
    if spec is None or not spec.strip():
        spec = default_model()
    spec = spec.strip()
    local = Path(spec).expanduser()
    if local.suffix == ".gguf" and not local.is_file():
        raise ModelError(f"GGUF file not found: {local}")
    if local.exists():
        if local.is_file() and local.suffix == ".gguf":
            return _transformers_model(str(local), options, background)
        if not (local / "config.json").exists():
            from .trained import trained_folder

            folder = trained_folder(local)
            if folder is None:
                raise ModelError(f"{local} is not a model folder: it has no config.json")
            return _transformers_model(str(folder), options, background, name=str(local))
        return _transformers_model(str(local), options, background)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")) or _known(spec):
        from .profiles import find_profile

        profile = find_profile(spec)
        hub_id = profile.name if profile is not None and spec.count("/") != 1 else spec
        snapshot = _hub_snapshot(hub_id)
        if snapshot is not None:
            return _transformers_model(str(snapshot), options, background, name=hub_id)
        if profile is not None and profile.package:
            from .gguf import packaged_gguf

            gguf = packaged_gguf(profile.package, hub_id)
            return _transformers_model(str(gguf), options, background, name=hub_id, profile=profile)
        from .hub import fetch

        try:
            folder = fetch(hub_id)  # downloaded on first use, like transformers does
        except ModelNotAvailable as exc:
            raise ModelNotAvailable(
                f"model {hub_id} is not available offline: {exc}. Download it where the hub is reachable "
                f"(`mcr-agent models pull {hub_id}`) and pass its folder with --model /path/to/weights, serve it "
                "and pass --endpoint URL, or replay a recorded run with --model replay:TRACE.jsonl"
            ) from None
        return _transformers_model(str(folder), options, background, name=hub_id)
    raise ModelError(
        f"unknown model {spec!r}: pass a hub id like {DEFAULT_MODEL}, a local model folder or .gguf file, "
        "openai:MODEL@URL, or replay:FILE (`mcr-agent models` lists the known ones)"
    )


def _known(spec: str) -> bool:
    from .profiles import find_profile

    return find_profile(spec) is not None


def _transformers_model(path: str, options: dict | None = None, background: bool = False, **fixed: Any) -> Model:
    options = dict(options or {})
    device = options.pop("device", None)
    if device and device != "auto" and "device_map" not in options:
        options["device_map"] = device

    def load() -> Model:
        from .local import TransformersModel

        return TransformersModel(path, **fixed, **options)

    if background:
        from .background import LoadingModel

        return LoadingModel(fixed.get("name") or path, load)
    return load()


def _server_model(url: str, model: str | None, options: dict) -> Model:
    from .openai_server import OpenAIServerModel

    options = {k: v for k, v in options.items() if k not in ("device", "constrain")}
    return OpenAIServerModel(url, model, **options)


__all__ = [
    "DEFAULT_MODEL",
    "Model",
    "ModelError",
    "ModelNotAvailable",
    "ModelOutput",
    "ParsedText",
    "default_model",
    "load_model",
    "parse_tool_calls",
    "split_reasoning",
]
