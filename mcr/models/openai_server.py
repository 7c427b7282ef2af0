"""``OpenAIServerModel``: a model behind an OpenAI-compatible chat API.

vLLM, SGLang, llama.cpp's server, ``transformers serve`` and hosted APIs all speak
it; tensor parallelism and multi-node serving are the server's business, the
runtime is its client. Frames go as base64 JPEG image parts, each after its
timestamp (or, with ``video_input="video_url"``, as one short MPEG-4 clip for
servers that take video). Tool calls are read natively when the server returns
them, and from the text when it writes ``<tool_call>`` blocks into the content
(vLLM without a tool parser does). Rate limits (429), server errors (5xx),
timeouts and dropped connections are retried with exponential backoff.

Every call of a run sends the same tools; a phase that may call fewer says so with
``tool_choice`` (``"none"``, or the one function it may call), and a server that refuses
that is asked again without it (the loop then refuses what gets through). llama.cpp's server
is asked to keep its cache of the prompt (``cache_prompt``); vLLM and SGLang keep theirs when
started so (see the README).
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from mcr.types import FramesPart, ImagePart, Message, TextPart, ToolCall, Usage, format_time

from .base import ModelError, ModelOutput
from .chat import arrange, frames_label, jpeg_data_url, mp4_data_url, tool_listing
from .parse import loads_lenient, split_reasoning
from .profiles import ModelProfile, profile_for

RETRY_STATUS = (408, 409, 429)


def normalise_url(url: str) -> str:
    """``host:8000`` or ``http://host:8000`` becomes ``http://host:8000/v1``; a given path is kept."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ModelError(f"not a server URL: {url!r} (write e.g. http://127.0.0.1:8000/v1)")
    if parsed.path in ("", "/"):
        url += "/v1"
    return url


def _arguments(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if not raw or not str(raw).strip():
        return {}
    try:
        value = loads_lenient(str(raw))
    except ValueError:
        return {"input": raw}
    return value if isinstance(value, dict) else {"input": value}


def tool_choice(allowed: Sequence[str] | None) -> str | dict | None:
    """``tool_choice`` for the tools a call may call: ``"none"``, the one function, or None (any)."""
    if allowed is None:
        return None
    if not allowed:
        return "none"
    if len(allowed) == 1:
        return {"type": "function", "function": {"name": allowed[0]}}
    return None


class OpenAIServerModel:
    """A model served over the OpenAI chat-completions API, through the official ``openai`` client.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added to a bare host).
        model: the served model's name; default: the first one the server lists.
        api_key: default ``$MCR_API_KEY``, then ``$OPENAI_API_KEY``, then ``"EMPTY"`` (local servers).
        timeout: seconds to wait for one answer before it counts as a timeout.
        max_retries: retries after a 429, a 5xx, a timeout or a dropped connection.
        video_input: ``"images"`` (JPEG parts, any vision server) or ``"video_url"`` (an MPEG-4 clip).
        native_tools: send ``tools=`` (default: yes, falling back to the prompt if the server refuses).
        cache_prompt: send llama.cpp's ``cache_prompt: true``; default: when the server's model
            list says it is llama.cpp (``owned_by: llamacpp``).
        profile: budgets and abilities; default: the known profile of ``model`` if any.
    """

    streams_text = True

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        video_input: str = "images",
        native_tools: bool | None = None,
        profile: ModelProfile | None = None,
        max_tokens: int = 1024,
        extra_body: dict | None = None,
        cache_prompt: bool | None = None,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise ModelError(
                "OpenAI-compatible servers need the openai client: pip install 'mcr-agent[models]'"
            ) from None
        if video_input not in ("images", "video_url"):
            raise ModelError(f"video_input must be 'images' or 'video_url', got {video_input!r}")
        self._openai = openai
        self.base_url = normalise_url(base_url)
        key = api_key or os.environ.get("MCR_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0)
        self.timeout = timeout
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.model = model or self._served_model()
        self.name = f"openai:{self.model}@{self.base_url}"
        base = profile or profile_for(self.model, server=True)
        if native_tools is not None:
            base = base.replace(native_tools=native_tools)
        self.profile = base.replace(video=video_input == "video_url", images=True)
        self.video_input = video_input
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.tools_refused = False  # the server said no to tools=; the listing then goes in the prompt
        self.schema_refused = False  # the server said no to response_format=; replies are then read leniently
        self.retries = 0  # retries made so far, for the curious
        self.choice_refused = False  # the server said no to tool_choice; the loop refuses what gets through
        if cache_prompt is None:
            cache_prompt = self._owner() == "llamacpp"
        if cache_prompt:
            self.extra_body.setdefault("cache_prompt", True)

    def _owner(self) -> str:
        """Who the server says owns its model (llama.cpp's says ``llamacpp``); "" when unknown."""
        try:
            listed = self.client.models.list()
        except self._openai.OpenAIError:
            return ""
        mine = [m for m in listed.data if m.id == self.model] or list(listed.data)
        return str(getattr(mine[0], "owned_by", "") or "") if mine else ""

    def _served_model(self) -> str:
        try:
            listed = self.client.models.list()
            names = [m.id for m in listed.data]
        except self._openai.OpenAIError as exc:
            raise ModelError(
                f"cannot list the models of the server at {self.base_url}: {self._describe(exc)}; "
                "name one with openai:MODEL@URL or --model MODEL --endpoint URL"
            ) from None
        if not names:
            raise ModelError(f"the server at {self.base_url} serves no model")
        return names[0]

    # ------------------------------------------------------------ messages
    def _content(self, parts: Sequence[Any]) -> str | list[dict]:
        out: list[dict] = []
        for p in parts:
            if isinstance(p, TextPart):
                out.append({"type": "text", "text": p.text})
            elif isinstance(p, FramesPart) and len(p.frames):
                frames = p.frames
                out.append({"type": "text", "text": frames_label(frames)})
                if self.video_input == "video_url":
                    url = mp4_data_url(frames, self.profile.max_pixels)
                    out.append({"type": "video_url", "video_url": {"url": url}})
                    continue
                for t, image in zip(frames.timestamps, frames.images):
                    out.append({"type": "text", "text": f"{format_time(t)}:"})
                    url = jpeg_data_url(image, self.profile.max_pixels)
                    out.append({"type": "image_url", "image_url": {"url": url}})
            elif isinstance(p, ImagePart):
                if p.timestamp is not None:
                    out.append({"type": "text", "text": f"{format_time(p.timestamp)}:"})
                out.append({"type": "image_url", "image_url": {"url": jpeg_data_url(p.image, self.profile.max_pixels)}})
        if all(x["type"] == "text" for x in out):
            return "".join(x["text"] for x in out)
        return out

    def request_messages(self, messages: Sequence[Message], tools: Sequence[dict] | None) -> list[dict]:
        """The messages as the chat-completions API takes them."""
        native = self.profile.native_tools and not self.tools_refused  # one form for the whole history
        out: list[dict] = []
        for m in arrange(messages, native):
            if m.role == "tool":
                out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text})
                continue
            entry: dict[str, Any] = {"role": m.role, "content": self._content(m.parts)}
            if m.role == "assistant" and m.tool_calls:
                entry["content"] = entry["content"] or None
                entry["tool_calls"] = [
                    {
                        "id": c.id or f"call_{i}",
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
                    }
                    for i, c in enumerate(m.tool_calls)
                ]
            out.append(entry)
        if tools and self.profile.native_tools and self.tools_refused:
            listing = tool_listing(tools)
            if out and out[0]["role"] == "system" and isinstance(out[0]["content"], str):
                out[0]["content"] += "\n\n" + listing
            else:
                out.insert(0, {"role": "system", "content": listing})
        return out

    # ------------------------------------------------------------ generate
    def generate(self, messages: list[Message], tools: list[dict] | None = None, **options: Any) -> ModelOutput:
        """One model turn. Options: ``max_tokens`` (or ``max_new_tokens``), ``temperature``, ``top_p``,
        ``enable_thinking`` (sent as a chat-template argument), ``on_text`` (stream text to a callback),
        ``response_schema`` (a JSON schema for a reply without tools, sent as ``response_format``;
        a server that refuses it is asked again without), ``allowed_tools`` (the names of ``tools``
        this call may call, sent as ``tool_choice``)."""
        on_text = options.pop("on_text", None)
        options.pop("constrain", None)  # decoding is the server's; see its structured-output options
        options.pop("max_time", None)
        reply = options.pop("response_schema", None)
        thinking = options.pop("enable_thinking", None)
        allowed = options.pop("allowed_tools", None)
        max_tokens = options.pop("max_tokens", options.pop("max_new_tokens", self.max_tokens))
        extra_body = {**self.extra_body, **options.pop("extra_body", {})}
        if thinking is not None:
            kwargs = {**extra_body.get("chat_template_kwargs", {}), "enable_thinking": bool(thinking)}
            extra_body["chat_template_kwargs"] = kwargs
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": options.pop("temperature", 0.0),
        }
        request.update(options)
        if extra_body:
            request["extra_body"] = extra_body
        attempt = 0
        while True:
            native = bool(tools) and self.profile.native_tools and not self.tools_refused
            request["messages"] = self.request_messages(messages, tools)
            for key in ("tools", "response_format", "tool_choice"):
                request.pop(key, None)
            if native:
                request["tools"] = list(tools)
                choice = tool_choice(allowed)
                if choice is not None and not self.choice_refused:
                    request["tool_choice"] = choice
            structured = reply is not None and not tools and not self.schema_refused
            if structured:
                request["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": reply}}
            sent: list[str] = []

            def relay(piece: str) -> None:
                sent.append(piece)  # noqa: B023 (relay lives only for this attempt)
                on_text(piece)

            try:
                return self._once(request, tools, relay if on_text else None)
            except self._openai.BadRequestError as exc:
                if "tool_choice" in request and "tool_choice" in self._describe(exc).lower():
                    self.choice_refused = True
                    continue
                if native and "tool" in self._describe(exc).lower():
                    self.tools_refused = True  # e.g. vLLM without --enable-auto-tool-choice
                    continue
                if structured and any(w in self._describe(exc).lower() for w in ("response_format", "json_schema")):
                    self.schema_refused = True
                    continue
                raise ModelError(f"the server at {self.base_url} refused the request: {self._describe(exc)}") from None
            except self._openai.NotFoundError as exc:
                raise ModelError(
                    f"the server at {self.base_url} has no model {self.model!r} ({self._describe(exc)})"
                ) from None
            except (self._openai.AuthenticationError, self._openai.PermissionDeniedError) as exc:
                raise ModelError(
                    f"the server at {self.base_url} refused the API key ({self._describe(exc)}); "
                    "set $MCR_API_KEY or $OPENAI_API_KEY"
                ) from None
            except self._openai.OpenAIError as exc:
                if not self._retryable(exc) or sent or attempt >= self.max_retries:
                    raise ModelError(self._failure(exc, attempt)) from None
                time.sleep(self._delay(attempt, exc))
                attempt += 1
                self.retries += 1

    def _retryable(self, exc: Exception) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError, o.RateLimitError, o.InternalServerError)):
            return True
        return isinstance(exc, o.APIStatusError) and exc.status_code in RETRY_STATUS

    def _delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        try:
            if after is not None:
                return min(self.max_backoff_s, max(0.0, float(after)))
        except ValueError:
            pass
        delay = self.backoff_s * (2**attempt)
        return min(self.max_backoff_s, delay * (1 + 0.25 * random.random()))

    def _describe(self, exc: Exception) -> str:
        body = getattr(exc, "body", None)
        if isinstance(body, dict):
            err = body.get("error")
            msg = body.get("message") or (err.get("message") if isinstance(err, dict) else err) or body.get("detail")
            if msg:
                return str(msg).strip().splitlines()[0]
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    def _failure(self, exc: Exception, attempt: int) -> str:
        tries = f"{attempt + 1} {'try' if attempt == 0 else 'tries'}"
        if isinstance(exc, self._openai.APITimeoutError):
            return (
                f"the server at {self.base_url} did not answer within {self.timeout:g} s ({tries}); "
                "check that it is up and not overloaded, or raise the timeout"
            )
        if isinstance(exc, self._openai.APIConnectionError):
            return f"cannot reach the server at {self.base_url} ({tries}): {self._describe(exc)}"
        status = getattr(exc, "status_code", None)
        where = f"HTTP {status}" if status else type(exc).__name__
        return f"the server at {self.base_url} failed with {where} ({tries}): {self._describe(exc)}"

    def _once(self, request: dict, tools: Sequence[dict] | None, on_text: Callable[[str], None] | None) -> ModelOutput:
        known = {t.get("function", t).get("name") for t in tools or []} or None
        if on_text is None:
            response = self.client.chat.completions.create(**request)
            if not response.choices:
                raise ModelError(f"the server at {self.base_url} returned no choices")
            message = response.choices[0].message
            extra = getattr(message, "model_extra", None) or {}
            reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
            calls = [
                ToolCall(tc.function.name, _arguments(tc.function.arguments), tc.id or "")
                for tc in message.tool_calls or []
                if getattr(tc, "function", None)
            ]
            usage = response.usage
            return self._output(message.content or "", reasoning, calls, usage, known)
        request = {**request, "stream": True, "stream_options": {"include_usage": True}}
        text: list[str] = []
        reasoning: list[str] = []
        pending: dict[int, dict] = {}
        usage = None
        for chunk in self.client.chat.completions.create(**request):
            usage = chunk.usage or usage
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta is None:
                    continue
                extra = getattr(delta, "model_extra", None) or {}
                if extra.get("reasoning_content") or extra.get("reasoning"):
                    reasoning.append(extra.get("reasoning_content") or extra.get("reasoning"))
                if delta.content:
                    text.append(delta.content)
                    on_text(delta.content)
                for tc in delta.tool_calls or []:
                    slot = pending.setdefault(
                        tc.index if tc.index is not None else len(pending), {"id": "", "name": "", "arguments": ""}
                    )
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
        calls = [
            ToolCall(s["name"], _arguments(s["arguments"]), s["id"]) for _, s in sorted(pending.items()) if s["name"]
        ]
        return self._output("".join(text), "".join(reasoning), calls, usage, known)

    @staticmethod
    def _output(content: str, reasoning: str, calls: list[ToolCall], usage: Any, known: set | None) -> ModelOutput:
        tokens = Usage(getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0, 1)
        if calls:
            thought, rest = split_reasoning(content)
            return ModelOutput(rest, calls, "\n\n".join(x for x in (reasoning, thought) if x), tokens, raw=content)
        out = ModelOutput.from_text(content, tokens, known=known)
        if reasoning:
            out.reasoning = "\n\n".join(x for x in (reasoning, out.reasoning) if x)
        return out

    def __repr__(self) -> str:
        return f"OpenAIServerModel({self.base_url!r}, {self.model!r})"


__all__ = ["OpenAIServerModel", "normalise_url"]
