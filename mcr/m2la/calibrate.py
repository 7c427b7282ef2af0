"""Calibration inputs for a conversion: what each attention layer sees on real data.

Calibration is token ids (``[batch, seq]``), one processor output (a mapping with
``input_ids`` and, for a vision-language model, ``pixel_values`` /
``pixel_values_videos`` and their grids), or a list of such outputs. The model runs
on each, and a forward pre-hook on every attention module keeps its input. For a
vision-language model those inputs include the image and video tokens' activations
(after the vision tower merged them into the sequence), so the factorisation is
weighted by the same kinds of tokens the model meets when it answers about a video.

When more tokens are captured than ``max_tokens``, an evenly spaced subset is kept,
so every batch (text, images, videos) is represented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .errors import M2LAError

TOKEN_KINDS = ("text", "image", "video")


@dataclass
class CalibrationInputs:
    """Inputs of each attention layer on calibration data (float64, CPU), reusable across conversions.

    ``kinds`` counts the kept tokens by kind (``text``, ``image``, ``video``).
    """

    inputs: dict = field(default_factory=dict)  # layer index -> [tokens, hidden]
    kinds: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return min((x.shape[0] for x in self.inputs.values()), default=0)


def check_calibration(calibration, config):
    """``calibration`` in one of its normal forms: ``CalibrationInputs``, ids ``[batch, seq]``
    (int64) or a list of processor outputs. Raises :class:`M2LAError` for anything else."""
    if calibration is None or isinstance(calibration, CalibrationInputs):
        return calibration
    vocab = getattr(config, "vocab_size", None)

    def check_ids(ids, where):
        if not isinstance(ids, torch.Tensor):
            ids = torch.as_tensor(ids)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64) or ids.numel() == 0:
            raise M2LAError(f"{where} must be token ids of shape [batch, seq]")
        if vocab is not None and (int(ids.max()) >= vocab or int(ids.min()) < 0):
            raise M2LAError(f"{where}: token ids must lie in [0, {vocab})")
        return ids.long()

    if isinstance(calibration, Mapping):
        calibration = [calibration]
    if isinstance(calibration, (list, tuple)) and calibration and all(isinstance(b, Mapping) for b in calibration):
        batches = []
        for i, batch in enumerate(calibration):
            if "input_ids" not in batch:
                raise M2LAError(f"calibration batch {i} has no input_ids (pass a processor's output)")
            batches.append({**batch, "input_ids": check_ids(batch["input_ids"], f"calibration batch {i}")})
        return batches
    if isinstance(calibration, (list, tuple)) and not calibration:
        raise M2LAError("calibration is empty")
    try:
        return check_ids(calibration, "calibration")
    except (TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, M2LAError):
            raise
        raise M2LAError(
            "calibration must be token ids [batch, seq], a processor output (a mapping with input_ids) "
            f"or a list of them; got {type(calibration).__name__}"
        ) from None


def _token_kinds(model, ids: torch.Tensor) -> torch.Tensor:
    """0 text, 1 image, 2 video for each token of ``ids``."""
    config = model.config
    kinds = torch.zeros(ids.shape, dtype=torch.long)
    for value, name in ((1, "image_token_id"), (2, "video_token_id")):
        token = getattr(config, name, None)
        if token is not None:
            kinds[ids.cpu() == token] = value
    return kinds


def capture_inputs(model, modules, calibration, max_tokens: int) -> CalibrationInputs:
    """Run ``model`` on normalised ``calibration`` and keep each of ``modules``' inputs."""
    store = {i: [] for i in range(len(modules))}

    def hook(i):
        def fn(module, args, kwargs):
            hs = kwargs.get("hidden_states", args[0] if args else None)
            store[i].append(hs.detach().reshape(-1, hs.shape[-1]).double().cpu())

        return fn

    if isinstance(calibration, torch.Tensor):
        batches = [{"input_ids": row[None]} for row in calibration]
    else:
        batches = calibration
    handles = [m.register_forward_pre_hook(hook(i), with_kwargs=True) for i, m in enumerate(modules)]
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    kinds = []
    try:
        with torch.no_grad():
            for batch in batches:
                moved = {}
                for key, value in batch.items():
                    if isinstance(value, torch.Tensor):
                        value = value.to(device)
                        if value.is_floating_point():
                            value = value.to(dtype)
                    moved[key] = value
                model(**moved, use_cache=False)
                kinds.append(_token_kinds(model, batch["input_ids"]).reshape(-1))
    finally:
        for h in handles:
            h.remove()
    kind = torch.cat(kinds)
    inputs = {i: torch.cat(v) for i, v in store.items()}
    total = kind.numel()
    if any(x.shape[0] != total for x in inputs.values()):
        raise M2LAError("the attention layers saw another number of tokens than the calibration holds")
    if total > max_tokens:
        keep = torch.linspace(0, total - 1, max_tokens).round().long().unique()
        inputs = {i: x[keep] for i, x in inputs.items()}
        kind = kind[keep]
    counts = {name: int((kind == k).sum()) for k, name in enumerate(TOKEN_KINDS)}
    return CalibrationInputs(inputs, counts)


def processor_batches(processor, images=(), videos=(), text: str = "Describe what you see.") -> list[dict]:
    """One processor output per image and per video (``videos``: ``(frames [n, h, w, 3], fps)``),
    each in a user turn with ``text``, for calibrating a vision-language model."""
    if getattr(processor, "image_processor", None) is None:
        raise M2LAError("image or video calibration needs a vision-language model with an image processor")

    def prompt(kind):
        conv = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": text}]}]
        try:
            return processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        except (ValueError, TypeError, AttributeError):
            pad = "<|image_pad|>" if kind == "image" else "<|video_pad|>"
            return f"<|vision_start|>{pad}<|vision_end|>{text}"

    batches = []
    for image in images:
        batches.append(dict(processor(text=[prompt("image")], images=[image], return_tensors="pt")))
    for item in videos:
        if not (isinstance(item, tuple) and len(item) == 2 and getattr(item[0], "ndim", 0) == 4):
            raise M2LAError("each calibration video must be (frames [n, height, width, 3], fps)")
        frames, fps = item
        if getattr(processor, "video_processor", None) is None:
            raise M2LAError("video calibration needs a processor that takes video")
        kwargs = {"text": [prompt("video")], "videos": [frames], "return_tensors": "pt", "do_sample_frames": False}
        try:
            from transformers.video_utils import VideoMetadata

            n = len(frames)
            kwargs["video_metadata"] = [
                VideoMetadata(
                    total_num_frames=n,
                    fps=fps,
                    frames_indices=list(range(n)),
                    height=frames.shape[1],
                    width=frames.shape[2],
                )
            ]
            batches.append(dict(processor(**kwargs)))
        except TypeError:
            kwargs.pop("video_metadata", None)
            batches.append(dict(processor(**kwargs)))
    return batches
