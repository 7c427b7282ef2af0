"""``TransformersModel``: any chat VLM (or text LLM) through transformers, on this machine.

Loading: ``AutoProcessor`` with ``AutoModelForImageTextToText`` for vision-language
models, ``AutoModelForCausalLM`` for text models and for remote-code VLMs that load
that way (InternVideo3, with ``trust_remote_code=True``). A ``.gguf`` file is
converted once to safetensors under ``~/.cache/mcr/gguf`` (see :mod:`.gguf`); a
folder written by ``mcr-agent m2la convert`` loads through :mod:`mcr.m2la`.

Frames reach the model as a video when its processor takes video (their true
timestamps in the prompt and in the video metadata), else as images each after
its timestamp, else (text models) as a reference. Frames are scaled to the
profile's pixel budget first. Every tensor the processor returns is passed to
``generate``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from mcr.types import FramesPart, ImagePart, Message, TextPart, Usage

from .base import ModelError, ModelOutput
from .chat import arrange, as_array, fit_pixels, frames_label, frames_reference
from .kvcache import PromptCache, Timing
from .profiles import GENERIC, ModelProfile, profile_for

DEFAULT_MAX_NEW_TOKENS = 768
END_MARKERS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_utterance>")


def _template_has_tools(template: Any) -> bool:
    if isinstance(template, dict):
        return any(_template_has_tools(t) for t in template.values())
    return isinstance(template, str) and "tools" in template


class _TextStream:
    """A ``generate`` streamer that hands each new piece of decoded text to a callback."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate hands the prompt over first
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # a character still being spelled out in bytes
            return
        if len(text) > self.sent:
            self.on_text(text[self.sent :])
            self.sent = len(text)


class TransformersModel:
    """A local model through transformers, following the ``Model`` protocol.

    Args:
        model_id_or_path: a model folder, a ``.gguf`` file, or a hub id already in the local cache.
        dtype: torch dtype name or ``"auto"`` (the checkpoint's).
        device_map: where the weights go (``"auto"``, ``"cpu"``, ``"cuda"``...).
        attn_implementation: e.g. ``"sdpa"`` or ``"flash_attention_2"``; default: transformers' choice.
        trust_remote_code: run the checkpoint's own modelling code; default: the profile's
            (on for InternVideo3, off otherwise).
        profile: a :class:`ModelProfile`; default: the known one for this model, corrected by
            what loads (video processor, a chat template that takes tools).
        constrain: constrain decoding to one valid tool call per turn. Default: on when the model
            has no native tool calling.
        max_new_tokens: the reply's token limit.
        reuse_cache: keep the key-value cache of the last prompt (the standard cache, or the
            latent cache of an M2LA model) and read only what follows the longest common token
            prefix of the next prompt. Prompts with pictures are read whole.
    """

    streams_text = True

    def __init__(
        self,
        model_id_or_path: str,
        dtype: str = "auto",
        device_map: str | dict | None = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool | None = None,
        profile: ModelProfile | None = None,
        constrain: bool | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        bounds: Any = None,
        name: str | None = None,
        reuse_cache: bool = True,
    ) -> None:
        source = Path(str(model_id_or_path)).expanduser()
        if source.suffix == ".gguf":
            from .gguf import gguf_folder

            folder = gguf_folder(source)
        else:
            folder = source
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder} is not a model folder: it has no config.json")
        self.path = folder
        self.name = name or str(model_id_or_path)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        base = profile or profile_for(self.name, config)
        trust = base.trust_remote_code if trust_remote_code is None else trust_remote_code
        self._load(folder, config, base, dtype, device_map, attn_implementation, trust)
        self.constrain = (not self.profile.native_tools) if constrain is None else bool(constrain)
        self.max_new_tokens = int(max_new_tokens)
        self.bounds = bounds
        self._grammar = None
        self._lock = threading.Lock()
        self.reuse_cache = bool(reuse_cache)
        self.cache = PromptCache(latent="m2la" in config)
        self.last_prefill_s = 0.0  # the last call's seconds to its first new token

    # ------------------------------------------------------------- loading
    def _load(
        self, folder: Path, config: dict, base: ModelProfile, dtype: str, device_map: Any, attn: str | None, trust: bool
    ) -> None:
        try:
            import torch  # noqa: F401
            import transformers
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
            from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        except ImportError as exc:
            raise ModelError(
                f"local models need torch and transformers ({exc}); pip install 'mcr-agent[models]'"
            ) from None
        auto_map = config.get("auto_map") or {}
        model_type = config.get("model_type", "")
        if trust and "AutoModelForImageTextToText" in auto_map:
            cls = AutoModelForImageTextToText
        elif base.loader == "causal-lm" or (trust and "AutoModelForCausalLM" in auto_map):
            cls = AutoModelForCausalLM
        elif model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            cls = AutoModelForImageTextToText
        else:
            cls = AutoModelForCausalLM
        if auto_map and not trust and model_type not in transformers.CONFIG_MAPPING:
            raise ModelError(
                f"{self.name} ships its own modelling code (model_type {model_type!r}); "
                "load it with trust_remote_code=True if you trust it"
            )
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust}
        if attn:
            kwargs["attn_implementation"] = attn
        if device_map is not None:
            import importlib.util

            if device_map != "cpu" and importlib.util.find_spec("accelerate") is None:
                device_map = None  # accelerate places weights; without it everything stays on one device
            kwargs["device_map"] = device_map
        try:
            if "m2la" in config:  # converted by `mcr-agent m2la convert`: latent attention, its own loader
                self.model = _load_m2la(folder, dtype, device_map)
            else:
                self.model = cls.from_pretrained(str(folder), **kwargs).eval()
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load {self.name} from {folder}: {first}") from None
        try:
            self.processor = AutoProcessor.from_pretrained(str(folder), trust_remote_code=trust)
        except (OSError, ValueError, KeyError, TypeError):
            self.processor = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        has_images = getattr(self.processor, "image_processor", None) is not None
        has_video = getattr(self.processor, "video_processor", None) is not None
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        self.template = template
        if base.family == GENERIC.family:  # an unknown model: what loaded says what it takes
            video, images = has_video, has_images
        else:  # a known or given profile: what loaded can only take abilities away
            video, images = base.video and has_video, base.images and has_images
        self.profile = base.replace(video=video, images=images, native_tools=_template_has_tools(template))
        self.stop_token_ids = self._stop_ids()

    def _stop_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            ids.update([value] if isinstance(value, int) else list(value or []))
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[m] for m in END_MARKERS if m in vocab)
        return sorted(ids)

    @property
    def device(self) -> Any:
        return self.model.device

    @property
    def vocab_size(self) -> int:
        out = self.model.get_output_embeddings()
        return int(out.weight.shape[0]) if out is not None else len(self.tokenizer)

    # --------------------------------------------------------------- prompt
    def _conversation(self, messages: Sequence[Message], native: bool) -> tuple[list[dict], list, list, list]:
        """Template messages, and the images, videos and video metadata they refer to."""
        multimodal = self.profile.images or self.profile.video
        images: list = []
        videos: list = []
        metas: list = []
        conv: list[dict] = []
        for m in arrange(messages, native):
            parts: list[dict] = []
            for p in m.parts:
                if isinstance(p, TextPart):
                    parts.append({"type": "text", "text": p.text})
                elif isinstance(p, FramesPart) and len(p.frames):
                    parts.extend(self._frames_parts(p, images, videos, metas))
                elif isinstance(p, ImagePart):
                    if multimodal:
                        images.append(fit_pixels(as_array(p.image), self.profile.max_pixels))
                        parts.append({"type": "image"})
                    else:
                        parts.append({"type": "text", "text": "[an image this model cannot see]"})
            entry: dict[str, Any] = {"role": m.role}
            if multimodal:
                entry["content"] = parts
            else:
                entry["content"] = "".join(x["text"] for x in parts)
            if m.tool_calls:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            if m.role == "tool":
                entry["tool_call_id"] = m.tool_call_id or ""
                entry["name"] = m.name or ""
                entry["content"] = m.text
            conv.append(entry)
        return conv, images, videos, metas

    def _frames_parts(self, part: FramesPart, images: list, videos: list, metas: list) -> list[dict]:
        frames = part.frames
        label = {"type": "text", "text": frames_label(frames)}
        if self.profile.video:
            import numpy as np
            from transformers.video_utils import VideoMetadata

            arrays = np.stack([fit_pixels(im, self.profile.max_pixels) for im in frames.images])
            times = list(frames.timestamps)
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 1.0
            videos.append(arrays)
            metas.append(
                VideoMetadata(
                    total_num_frames=len(times),
                    fps=rate,
                    frames_indices=[t * rate for t in times],
                    height=arrays.shape[1],
                    width=arrays.shape[2],
                )
            )
            return [label, {"type": "video"}]
        if self.profile.images:
            out: list[dict] = [label]
            from mcr.types import format_time

            for t, im in zip(frames.timestamps, frames.images):
                images.append(fit_pixels(im, self.profile.max_pixels))
                out += [{"type": "text", "text": f"\n{format_time(t)}: "}, {"type": "image"}]
            return out
        return [{"type": "text", "text": frames_reference(frames)}]

    def prompt(
        self, messages: Sequence[Message], tools: Sequence[dict] | None = None, enable_thinking: bool | None = None
    ) -> tuple[str, list, list, list]:
        """The prompt text (chat template applied) and the pictures it refers to."""
        native = self.profile.native_tools  # the history keeps one form, with or without tools offered
        conv, images, videos, metas = self._conversation(messages, native)
        if not self.template:
            return _plain_prompt(conv, self.tokenizer), images, videos, metas
        extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        try:
            text = self.processor.apply_chat_template(
                conv,
                tools=list(tools) if native and tools else None,
                add_generation_prompt=True,
                tokenize=False,
                **extra,
            )
        except Exception as exc:  # template errors are jinja's, worded for the template's author
            raise ModelError(f"{self.name}: its chat template rejected the conversation: {exc}") from None
        return text, images, videos, metas

    def inputs(
        self, messages: Sequence[Message], tools: Sequence[dict] | None = None, enable_thinking: bool | None = None
    ) -> tuple[str, Any]:
        """The prompt and every tensor the processor makes of it, on the model's device."""
        text, images, videos, metas = self.prompt(messages, tools, enable_thinking)
        if images or videos:
            kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
            if images:
                kwargs["images"] = images
            if videos:
                kwargs.update(videos=videos, video_metadata=metas, do_sample_frames=False)
                if hasattr(getattr(self.processor, "video_processor", None), "cap_pixels_per_frame"):
                    kwargs["cap_pixels_per_frame"] = True  # the reference per-frame cap (Qwen3-VL)
            try:
                batch = self.processor(**kwargs)
            except TypeError:
                kwargs.pop("video_metadata", None)
                kwargs.pop("do_sample_frames", None)
                batch = self.processor(**kwargs)
        else:
            tok = self.tokenizer
            batch = tok([text], return_tensors="pt", add_special_tokens=False)
        batch = batch.to(self.device)
        dtype = getattr(self.model, "dtype", None)
        for key in list(batch.keys()):
            value = batch[key]
            if hasattr(value, "is_floating_point") and value.is_floating_point() and dtype is not None:
                batch[key] = value.to(dtype)
        return text, batch

    # ------------------------------------------------------------- generate
    def grammar(self):
        """The tool-call grammar compiler for this model's tokenizer (built on first use)."""
        if self._grammar is None:
            from .constrain import ToolCallGrammar

            self._grammar = ToolCallGrammar(self.tokenizer, self.vocab_size, self.stop_token_ids)
        return self._grammar

    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        """One model turn. Options: ``max_new_tokens``, ``temperature`` (0: greedy), ``top_p``,
        ``enable_thinking``, ``constrain`` (bool), ``on_text`` (a callback for streamed text),
        ``response_schema`` (a JSON schema a reply without tools must follow, under ``constrain``),
        ``max_time`` (the video's length in seconds: constrained spans cannot pass it), ``allowed_tools``
        (the names of ``tools`` this call may call; the rest stay in the prompt and are held back by the
        grammar; ``[]``: no tool call, its opening tag is refused), ``record`` (called
        with the processor's inputs, the new token ids and the raw logits of each new token: how a
        training episode keeps what was sampled)."""
        import torch

        from .constrain import Bounds

        thinking = options.pop("enable_thinking", None)
        on_text = options.pop("on_text", None)
        constrain = options.pop("constrain", self.constrain)
        max_new = int(options.pop("max_new_tokens", self.max_new_tokens))
        temperature = float(options.pop("temperature", 0.0) or 0.0)
        top_p = options.pop("top_p", None)
        reply = options.pop("response_schema", None)
        max_time = options.pop("max_time", None)
        record = options.pop("record", None)
        allowed = options.pop("allowed_tools", None)
        text, batch = self.inputs(messages, tools, thinking)
        callable_tools = list(tools or []) if allowed is None else [t for t in tools or [] if _name(t) in allowed]
        kwargs: dict[str, Any] = dict(batch)
        kwargs.update(
            max_new_tokens=max_new,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.stop_token_ids[0],
        )
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, **({"top_p": top_p} if top_p else {}))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        processor = None
        if allowed is not None and not callable_tools:
            opening = self.tokenizer.encode("<tool_call>", add_special_tokens=False)
            if opening:
                kwargs["bad_words_ids"] = [opening]
        if constrain and (callable_tools or reply):
            bounds = self.bounds or Bounds()
            if max_time is not None and bounds.max_time is None:
                bounds = dataclasses.replace(bounds, max_time=float(max_time))
            if thinking and bounds.think_tokens == 0:
                bounds = dataclasses.replace(bounds, think_tokens=max_new // 2)
            elif not thinking and bounds.think_tokens:
                bounds = dataclasses.replace(bounds, think_tokens=0)
            opened = bool(thinking) and text.rstrip().endswith("<think>")
            processor = self.grammar().processor(
                callable_tools,
                bounds,
                opened_think=opened,
                max_new_tokens=max_new,
                reply=None if callable_tools else reply,
            )
            kwargs["logits_processor"] = [processor]
        timing = Timing(_TextStream(self.tokenizer, on_text) if on_text is not None else None)
        kwargs["streamer"] = timing
        kwargs.update(options)
        kwargs.update(return_dict_in_generate=True, output_logits=record is not None)
        prompt_len = int(batch["input_ids"].shape[1])
        with self._lock, torch.inference_mode():
            if self.reuse_cache:
                self.cache.attach(self.model, kwargs, batch)
            out = self.model.generate(**kwargs)
            if self.reuse_cache:
                self.cache.keep(out, batch)
        self.last_prefill_s = timing.first_token_s
        if record is not None:
            record(batch, out.sequences[0, prompt_len:], out.logits)
        out = out.sequences
        new = out[0, prompt_len:]
        raw = self.tokenizer.decode(new, skip_special_tokens=True)
        usage = Usage(prompt_len, int(new.shape[0]), 1)
        known = {t.get("function", t).get("name") for t in tools or []}
        result = ModelOutput.from_text(raw, usage, known=known or None)
        if processor is not None and not processor.complete and not result.tool_calls:
            what = "tool call" if tools else "JSON reply"
            result.text = (
                f"[the reply reached the {max_new}-token limit before its {what} was complete]\n" + result.text
            ).strip()
        return result

    def __repr__(self) -> str:
        return f"TransformersModel({self.name!r}, {self.profile.vision}, native_tools={self.profile.native_tools})"


def _name(tool: dict) -> str:
    return tool.get("function", tool).get("name", "")


def _load_m2la(folder: Path, dtype: str, device_map: Any) -> Any:
    """A model converted to latent attention (M2LA), with its latent cache used by ``generate``."""
    import torch

    from mcr.m2la.io import load_m2la

    device = device_map if isinstance(device_map, str) and device_map != "auto" else None
    if device_map == "auto" and torch.cuda.is_available():
        device = "cuda"
    return load_m2la(folder, dtype=None if dtype == "auto" else dtype, device=device)


def _plain_prompt(conv: list[dict], tokenizer: Any) -> str:
    """A prompt for a tokenizer with no chat template (a base model, a GGUF without one).

    Uses the turn markers the vocabulary has (Gemma's or ChatML's), else plain role labels.
    """
    vocab = tokenizer.get_vocab()
    bos = tokenizer.bos_token or ""

    def text_of(entry: dict) -> str:
        content = entry.get("content", "")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        return content

    turns = [(e["role"], text_of(e)) for e in conv]
    if "<start_of_turn>" in vocab:
        system = "\n\n".join(t for r, t in turns if r == "system")
        out = [bos]
        first_user = True
        for role, text in turns:
            if role == "system":
                continue
            if role == "user" and first_user and system:
                text, first_user = f"{system}\n\n{text}", False
            out.append(f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{text}<end_of_turn>\n")
        return "".join(out) + plain_header(tokenizer)
    if "<|im_start|>" in vocab:
        body = "".join(f"<|im_start|>{r}\n{t}<|im_end|>\n" for r, t in turns)
        return body + plain_header(tokenizer)
    body = "".join(f"{r.capitalize()}: {t}\n\n" for r, t in turns)
    return bos + body + plain_header(tokenizer)


def plain_header(tokenizer: Any) -> str:
    """What :func:`_plain_prompt` writes before the model's turn."""
    vocab = tokenizer.get_vocab()
    if "<start_of_turn>" in vocab:
        return "<start_of_turn>model\n"
    if "<|im_start|>" in vocab:
        return "<|im_start|>assistant\n"
    return "Assistant:"


__all__ = ["TransformersModel"]
