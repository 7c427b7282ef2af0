"""What the backends share: the rendered context reshaped for a chat API, and frames
prepared for a model (scaled to its pixel budget, labelled with their timestamps).

Tool results may carry frames, but chat templates and the OpenAI API take pictures
only in user turns, so :func:`arrange` moves a tool result's frames into a user turn
right after the tool turns. Without native tool calling, calls are written into the
assistant's text as ``<tool_call>`` blocks and results come back as
``<tool_response>`` user turns, the Hermes convention the text parser reads.
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

from mcr.types import Frames, FramesPart, ImagePart, Message, Part, TextPart, format_time

TOOL_LISTING_HEADER = "Tools (call one by replying with a <tool_call> block holding one JSON object):"
TOOL_CALL_EXAMPLE = '<tool_call>\n{"name": "TOOL_NAME", "arguments": {...}}\n</tool_call>'


def frames_label(frames: Frames) -> str:
    """The timestamps of frames as the model reads them."""
    span = frames.span
    if span is None:
        return "[no frames]"
    times = ", ".join(format_time(t) for t in frames.timestamps)
    return f"[{len(frames)} frames from {format_time(span.start)}-{format_time(span.end)}, at {times}]"


def frames_reference(frames: Frames) -> str:
    """Frames named for a model that cannot see them."""
    span = frames.span
    where = f"{format_time(span.start)}-{format_time(span.end)}" if span else "?"
    return f"[{len(frames)} frames {where} were taken here; this model reads text only and cannot see them]"


def call_text(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def tool_listing(tools: Sequence[dict]) -> str:
    """Tool schemas written into a system prompt, for endpoints that take no ``tools=``."""
    lines = [json.dumps(t.get("function", t), ensure_ascii=False) for t in tools]
    return TOOL_LISTING_HEADER + "\n" + "\n".join(lines) + "\n" + TOOL_CALL_EXAMPLE


def _merge(a: Message, b: Message) -> Message:
    return Message(a.role, list(a.parts) + [TextPart("\n")] + list(b.parts), a.tool_calls + b.tool_calls)


def arrange(messages: Sequence[Message], native_tools: bool) -> list[Message]:
    """The messages reshaped for a chat template or API (see the module's notes).

    Tool turns keep their text only; their frames follow in one user turn. Without
    native tools, calls become text and results become user turns, and adjacent
    user turns are merged (many templates insist that roles alternate).
    """
    out: list[Message] = []
    carried: list[Part] = []

    def flush() -> None:
        if carried:
            out.append(Message("user", list(carried)))
            carried.clear()

    for m in messages:
        if m.role == "tool":
            text = m.text
            frame_parts = [p for p in m.parts if isinstance(p, (FramesPart, ImagePart))]
            if frame_parts:
                carried.append(TextPart(f"Frames returned by {m.name or 'the tool'} ({m.tool_call_id or ''}):"))
                carried.extend(frame_parts)
            if native_tools:
                out.append(Message("tool", text, tool_call_id=m.tool_call_id, name=m.name))
            else:
                out.append(Message("user", f"<tool_response>\n{text}\n</tool_response>"))
            continue
        flush()
        if m.role == "assistant" and m.tool_calls and not native_tools:
            body = "\n".join([m.text] if m.text else [])
            body = "\n".join(x for x in [body] + [call_text(c.name, c.arguments) for c in m.tool_calls] if x)
            out.append(Message("assistant", body))
            continue
        out.append(
            Message(
                m.role,
                m.content if isinstance(m.content, str) else list(m.content),
                list(m.tool_calls),
                m.tool_call_id,
                m.name,
            )
        )
    flush()
    if native_tools:
        return out
    merged: list[Message] = []
    for m in out:
        if merged and m.role == merged[-1].role == "user":
            merged[-1] = _merge(merged[-1], m)
        else:
            merged.append(m)
    return merged


# --------------------------------------------------------------------- frames


def fit_pixels(image: Any, max_pixels: int | None) -> Any:
    """An ``(H, W, 3)`` uint8 array scaled down (aspect kept) to at most ``max_pixels``."""
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    h, w = array.shape[:2]
    if not max_pixels or h * w <= max_pixels:
        return array
    from PIL import Image

    scale = (max_pixels / float(h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(array).resize(size, Image.BILINEAR))


def as_array(image: Any) -> Any:
    """An image part (array, PIL image or file path) as an RGB uint8 array."""
    import numpy as np

    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        from PIL import Image

        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def jpeg_data_url(image: Any, max_pixels: int | None = None, quality: int = 85) -> str:
    """An image as a ``data:image/jpeg;base64,...`` URL, scaled to ``max_pixels``."""
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(fit_pixels(as_array(image), max_pixels)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mp4_data_url(frames: Frames, max_pixels: int | None = None) -> str:
    """Frames encoded as a short MPEG-4 clip, for servers that take ``video_url``.

    The clip runs at the frames' mean sampling rate; the true timestamps travel in
    the text before it (:func:`frames_label`).
    """
    import base64
    from fractions import Fraction

    import av
    import numpy as np

    images = [fit_pixels(im, max_pixels) for im in frames.images]
    h, w = images[0].shape[:2]
    h, w = h - h % 2, w - w % 2
    times = frames.timestamps
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 1.0
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(rate).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for im in images:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(im[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return "data:video/mp4;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = [
    "arrange",
    "as_array",
    "call_text",
    "fit_pixels",
    "frames_label",
    "frames_reference",
    "jpeg_data_url",
    "mp4_data_url",
    "tool_listing",
]
