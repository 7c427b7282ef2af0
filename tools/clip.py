"""Frame and text embeddings with open_clip, for grounding and for finding objects.

The model is named by ``MCR_CLIP_MODEL`` (an open_clip architecture such as
``ViT-B-32``, ``hf-hub:org/repo``, or a local folder holding ``open_clip_config.json``
and weights) and ``MCR_CLIP_PRETRAINED`` (an open_clip pretrained tag, or a checkpoint
file). A tag's weights are taken from the Hugging Face cache when they are there and
downloaded only when the hub can be reached; otherwise loading stops at once with a
message naming the missing weights and how to provide them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mcr.memory import ChunkResult, register_stage
from mcr.types import TimeSpan

from .base import ToolError, shared_models
from .clip_image import light_images
from .frame_pass import FrameStage
from .sampling import Request, sample_times
from .stages import env_device, env_float

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RETRY_AFTER_S = 300.0  # a model that failed to load is not tried again for this long
_failures: dict[tuple, tuple[float, str]] = {}


class ClipUnavailable(ToolError):
    """No CLIP weights can be loaded; the message names them and how to get them."""


def clip_spec(model: str | None = None, pretrained: str | None = None) -> tuple[str, str]:
    """``(model, pretrained)`` from the arguments, else the environment, else the defaults."""
    model = model or os.environ.get("MCR_CLIP_MODEL") or DEFAULT_MODEL
    if os.path.isdir(os.path.expanduser(model)) and not model.startswith(("local-dir:", "hf-hub:")):
        model = "local-dir:" + os.path.abspath(os.path.expanduser(model))
    if model.startswith(("local-dir:", "hf-hub:")):
        return model, ""
    return model, pretrained if pretrained is not None else (
        os.environ.get("MCR_CLIP_PRETRAINED") or DEFAULT_PRETRAINED
    )


def _looks_like_path(value: str) -> bool:
    return os.path.sep in value or value.endswith((".bin", ".pt", ".pth", ".safetensors"))


def _how_to_get(model: str, pretrained: str) -> str:
    return (
        f"put the open_clip checkpoint of {model} ({pretrained or 'its weights'}) on this machine and set "
        "MCR_CLIP_PRETRAINED=/path/to/open_clip_pytorch_model.bin (MCR_CLIP_MODEL names the architecture), "
        "or MCR_CLIP_MODEL=/path/to/folder with open_clip_config.json and the weights"
    )


def unavailable_reason(model: str | None = None, pretrained: str | None = None) -> str | None:
    """Why CLIP cannot load here, found without importing it (None: it may load)."""
    import importlib.util

    model, pretrained = clip_spec(model, pretrained)
    if importlib.util.find_spec("open_clip") is None:
        return "open_clip is not installed: `pip install open-clip-torch`"
    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:") :])
        if not (folder / "open_clip_config.json").is_file():
            return f"CLIP folder {folder} not found or has no open_clip_config.json"
        return None
    if model.startswith("hf-hub:"):
        return None
    if _looks_like_path(pretrained):
        if not os.path.isfile(os.path.expanduser(pretrained)):
            return f"CLIP checkpoint {pretrained} not found; {_how_to_get(model, '')}"
        return None
    return None


def _cached_tag_file(model: str, tag: str) -> tuple[str | None, dict]:
    """The tag's weights in the Hugging Face cache (or None), and the tag's settings."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not repo:
        return None, cfg
    from huggingface_hub import try_to_load_from_cache

    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found, cfg
    return None, cfg


@dataclass
class ClipModel:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    name: str
    image_size: int
    text_session: Any = None  # the text tower on ONNX Runtime (see clip_text), when it can run there
    image_session: Any = None  # the image tower on ONNX Runtime (see clip_image), made on first use
    spec: str = ""  # "model|pretrained", the key under which the image graph is recorded
    weights: str | None = None  # the weights file, when there is one
    _image_tried: bool = field(default=False, init=False, repr=False)
    _short: Any = field(default=None, init=False, repr=False)  # the short-text module, built on first use

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-length embeddings of RGB ``(H, W, 3)`` uint8 images, ``(n, dim)`` float32."""
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(np.asarray(im))) for im in images]).to(self.device)
        if not self._image_tried:  # exported and checked the first time images are embedded, not at load
            from .clip_image import image_session

            self._image_tried, self.image_session = True, image_session(self.model, self.image_size, str(self.device))
            if self.image_session is not None and self.spec:
                from .clip_image import record

                try:  # a later process embeds frames on the graph alone, without PyTorch
                    record(self.spec, self.weights, self.image_session, self.preprocess)
                except Exception:  # noqa: BLE001 - not recorded: later processes load the model
                    pass
        if self.image_session is not None:
            try:
                out = self.image_session(batch).astype(np.float32)
                return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
            except Exception:  # a graph that cannot run: PyTorch from now on
                self.image_session = None
        with torch.inference_mode():
            out = self.model.encode_image(batch).float()
        out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy().astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of texts, ``(n, dim)`` float32."""
        import torch

        tokens = self.tokenizer(list(texts))
        if self.text_session is not None:
            try:
                out = self.text_session(tokens).astype(np.float32)
                return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
            except Exception:  # a bucket that cannot be exported: PyTorch from now on
                self.text_session = None
        tokens = tokens.to(self.device)
        with torch.inference_mode():
            out = (self._encode_short(tokens) if self._short_text_ok() else self.model.encode_text(tokens)).float()
        out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy().astype(np.float32)

    def _short_text_ok(self) -> bool:
        from .clip_text import short_text_ok

        return short_text_ok(self.model)

    def _encode_short(self, tokens: Any) -> Any:
        """``encode_text`` over the tokens up to the last end-of-text token only (see
        :func:`~mcr.tools.clip_text.short_tower`)."""
        if self._short is None:
            from .clip_text import short_tower

            self._short = short_tower(self.model)
        return self._short(tokens[:, : int(tokens.argmax(dim=-1).max()) + 1])


def _torch_device(device: str) -> str:
    if device not in ("auto", "", None):
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_clip(models: Any, model: str | None = None, pretrained: str | None = None, device: str = "auto") -> ClipModel:
    """The CLIP model, loaded once per process; raises :class:`ClipUnavailable` with a clear message."""
    model, pretrained = clip_spec(model, pretrained)
    reason = unavailable_reason(model, pretrained)
    if reason:
        raise ClipUnavailable(reason)
    dev = _torch_device(device)
    key = ("clip", model, pretrained, dev)
    failed = _failures.get(key)
    if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
        raise ClipUnavailable(failed[1])

    def load() -> ClipModel:
        import open_clip

        kwargs: dict[str, Any] = {}
        weights = os.path.expanduser(pretrained) if pretrained else None
        if pretrained and not _looks_like_path(pretrained) and not model.startswith(("local-dir:", "hf-hub:")):
            if open_clip.get_pretrained_cfg(model, pretrained) is None and model in open_clip.list_models():
                raise ClipUnavailable(
                    f"{pretrained!r} is not a pretrained tag of {model}; "
                    f"known: {', '.join(open_clip.list_pretrained_tags_by_model(model))}"
                )
            cached, cfg = _cached_tag_file(model, pretrained)
            if cached:  # load the file directly, with the tag's preprocessing
                weights = cached
                for key, arg in (
                    ("mean", "image_mean"),
                    ("std", "image_std"),
                    ("interpolation", "image_interpolation"),
                    ("resize_mode", "image_resize_mode"),
                ):
                    if cfg.get(key):
                        kwargs[arg] = cfg[key]
            elif os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
                raise ClipUnavailable(
                    f"CLIP weights {model} / {pretrained} are not on this machine and the hub "
                    f"cannot be reached; {_how_to_get(model, pretrained)}"
                )
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=dev, **kwargs)
            tokenizer = open_clip.get_tokenizer(model)
        except ClipUnavailable:
            raise
        except Exception as exc:
            raise ClipUnavailable(
                f"CLIP model {model} ({pretrained or 'folder weights'}) cannot load: "
                f"{type(exc).__name__}: {str(exc)[:300]}; {_how_to_get(model, pretrained)}"
            ) from None
        net.eval()
        size = getattr(net.visual, "image_size", 224)
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        label = model if not pretrained else f"{model}/{os.path.basename(pretrained)}"
        from .clip_text import text_session

        if model.startswith("local-dir:"):
            folder = Path(model[len("local-dir:") :])
            names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            weights = next((str(folder / n) for n in names if (folder / n).is_file()), None)
        elif weights and not os.path.isfile(weights):
            weights = None
        return ClipModel(
            net,
            preprocess,
            tokenizer,
            dev,
            label,
            size,
            text_session(net, tokenizer, dev),
            spec=f"{model}|{pretrained}",
            weights=weights,
        )

    try:
        return models.get(key, load)
    except ClipUnavailable as exc:
        _failures[key] = (time.monotonic(), str(exc))
        raise


def why_no_clip(models: Any = None) -> str | None:
    """None when the CLIP image model loads here, else the reason in one line (a library indexing
    stages or a live session leaves the ``embeddings`` stage out then)."""
    from .base import shared_models

    try:
        load_clip(models or shared_models)
    except ImportError as exc:
        return f"open_clip is not installed ({exc})"
    except ClipUnavailable as exc:
        return str(exc)
    return None


def _hub_reachable() -> bool:
    from .web import network_available

    return network_available("huggingface.co")


# ------------------------------------------------------------------ the index stage


SAME_FRAME = 3 / 255  # a frame shares the last embedding while no grey cell moved this much


class EmbeddingStage(FrameStage):
    """open_clip image embeddings of frames sampled at ``fps``. With ``share`` (the default;
    ``MCR_CLIP_SHARE=0`` turns it off) a frame that looks the same as the last one embedded
    (``tools.change``) shares its embedding; the info counts frames sampled and embedded."""

    name = "embeddings"

    def __init__(
        self,
        model: str | None = None,
        pretrained: str | None = None,
        fps: float | None = None,
        device: str | None = None,
        chunk_s: float = 60.0,
        models: Any = None,
        share: bool | None = None,
    ) -> None:
        self.model, self.pretrained = clip_spec(model, pretrained)
        self.fps = fps or env_float("MCR_CLIP_FPS", 1.0)
        self.device = device or env_device()
        self.chunk_s = chunk_s
        self.models = models or shared_models
        self.share = share if share is not None else os.environ.get("MCR_CLIP_SHARE", "1") != "0"
        self.version = f"1:{self.model}:{os.path.basename(str(self.pretrained))}:{self.fps:g}" + (
            ":shared" if self.share else ""
        )

    def skip_reason(self, video: Any) -> str | None:
        return None

    def images(self) -> Any:
        """What embeds the frames: the recorded ONNX graph alone when there is one (no PyTorch,
        see ``clip_image.light_images``), else the CLIP model."""
        if self.device in ("auto", "cpu"):
            spec = f"{self.model}|{self.pretrained}"
            light = self.models.get(("clip-light-images", spec), lambda: light_images(spec) or False)
            if light:
                return light
        return load_clip(self.models, self.model, self.pretrained, self.device)

    def request(self, video: Any, span: TimeSpan) -> Request:
        side = max(64, self.images().image_size)
        max_pixels = int(side * side * 16 / 9) if video.width >= video.height else int(side * side * 9 / 16)
        return Request(sample_times(span, self.fps), max(max_pixels, 64 * 64))

    def from_frames(self, video: Any, span: TimeSpan, frames: list) -> ChunkResult:
        from .change import ChangeGate

        clip = self.images()
        stamps, owner, vecs, batch = [], [], [], []  # owner[i]: the embedded frame that frame i shares
        gate = ChangeGate(SAME_FRAME)
        for t, image in frames:
            stamps.append(t)
            if self.share and not gate.changed(image) and owner:
                owner.append(owner[-1])  # looks the same as the last embedded frame: shares its embedding
                continue
            owner.append(sum(len(v) for v in vecs) + len(batch))
            batch.append(image)
            if len(batch) == 32:
                vecs.append(clip.embed_images(batch))
                batch = []
        if batch:
            vecs.append(clip.embed_images(batch))
        if not stamps:
            return ChunkResult()
        emb = np.concatenate(vecs).astype(np.float32)[owner]
        info = {"frames": len(stamps), "frames_embedded": len(set(owner))}
        rows = np.concatenate([np.asarray(stamps, np.float32)[:, None], emb], 1)
        return ChunkResult(arrays={span.start: rows}, info=info)


register_stage("embeddings", EmbeddingStage)
