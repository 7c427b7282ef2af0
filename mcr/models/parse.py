"""Tool calls from model text: Hermes/Qwen ``<tool_call>`` blocks, fenced or bare JSON.

Tolerates the slips models make: single quotes, Python literals, trailing commas,
``parameters``/``args`` for ``arguments``, arguments given as a JSON string, code
fences, prose around the call, unclosed tags and ``<think>`` reasoning.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from mcr.types import ToolCall

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_TOOL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|(?=<tool_call>)|\Z)", re.S | re.I)
_FUNCTION_TAG = re.compile(r"<function=([\w.\-]+)>\s*(.*?)\s*</function>", re.S)
_PARAM_TAG = re.compile(r"<parameter=([\w.\-]+)>\s*(.*?)\s*</parameter>", re.S)
_FENCE = re.compile(r"```[ \t]*(?:json|tool_call|python|javascript)?[ \t]*\n?(.*?)```", re.S | re.I)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")

NAME_KEYS = ("name", "tool", "tool_name", "function", "function_name", "action")
ARG_KEYS = ("arguments", "parameters", "args", "input", "params", "action_input", "tool_input", "kwargs")


@dataclass
class ParsedText:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""


def split_reasoning(text: str) -> tuple[str, str]:
    """``(reasoning, rest)``: ``<think>`` blocks apart from the answer text.

    Handles a closing ``</think>`` without an opening tag (the template opened it)
    and an opening tag never closed (generation stopped while thinking). Tags after the
    first ``<tool_call>`` are the call's own text (an argument may hold them) and stay.
    """
    at = text.lower().find("<tool_call>")
    tail = text[at:] if at >= 0 else ""
    text = text[:at] if at >= 0 else text
    reasoning = [m.strip() for m in _THINK_BLOCK.findall(text)]
    rest = _THINK_BLOCK.sub("", text)
    lower = rest.lower()
    if "</think>" in lower:
        cut = lower.index("</think>")
        reasoning.insert(0, rest[:cut].replace("<think>", "").strip())
        rest = rest[cut + len("</think>") :]
    elif "<think>" in lower:
        cut = lower.index("<think>")
        reasoning.append(rest[cut + len("<think>") :].strip())
        rest = rest[:cut]
    return "\n\n".join(r for r in reasoning if r), (rest + tail).strip()


def loads_lenient(blob: str) -> Any:
    """JSON, or the nearest thing a model wrote to it. Raises ValueError if hopeless."""
    blob = blob.strip()
    if not blob:
        raise ValueError("empty")
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        pass
    fixed = _TRAILING_COMMA.sub(r"\1", blob)
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        pass
    py = re.sub(r"\btrue\b", "True", fixed)
    py = re.sub(r"\bfalse\b", "False", py)
    py = re.sub(r"\bnull\b", "None", py)
    try:
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    raise ValueError(f"not JSON: {blob[:80]!r}")


def _balanced_objects(text: str) -> list[tuple[int, int]]:
    """Spans of top-level ``{...}`` / ``[...]`` in text, respecting quoted strings."""
    spans = []
    depth = 0
    start = -1
    quote = None
    escaped = False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth > 0:
            quote = ch
        elif ch in "{[":
            if depth == 0:
                start = i
            depth += 1
        elif ch in "}]" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans


def json_values(text: str) -> list[Any]:
    """The JSON objects and arrays written in ``text`` (found by balanced brackets, quoted
    strings respected), each read leniently; ones that cannot be read are left out."""
    found = []
    for start, end in _balanced_objects(text):
        try:
            found.append(loads_lenient(text[start:end]))
        except ValueError:
            continue
    return found


def _call_from_obj(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "function" and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = None
    for key in NAME_KEYS:
        value = obj.get(key)
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            inner = _call_from_obj(value)
            if inner is not None:
                return inner
        if isinstance(value, str) and value.strip():
            name = value.strip()
            break
    if name is None:
        return None
    args: Any = {}
    for key in ARG_KEYS:
        if key in obj:
            args = obj[key]
            break
    else:
        args = {k: v for k, v in obj.items() if k not in NAME_KEYS and k not in ("id", "type")}
    if isinstance(args, str):
        try:
            args = loads_lenient(args) if args.strip() else {}
        except ValueError:
            args = {"input": args}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        args = {"input": args}
    return ToolCall(name=name, arguments=args, id=str(obj.get("id") or ""))


def _calls_from_blob(blob: str) -> list[ToolCall]:
    try:
        obj = loads_lenient(blob)
    except ValueError:
        obj = None
    if obj is None:
        calls = []
        for s, e in _balanced_objects(blob):
            calls.extend(_calls_from_blob(blob[s:e]) if (s, e) != (0, len(blob)) else [])
        return calls
    items = obj if isinstance(obj, list) else [obj]
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
        items = obj["tool_calls"]
    return [c for c in (_call_from_obj(i) for i in items) if c is not None]


def _function_tag_calls(body: str) -> list[ToolCall]:
    calls = []
    for name, inner in _FUNCTION_TAG.findall(body):
        params = _PARAM_TAG.findall(inner)
        if params:
            args = {}
            for key, raw in params:
                try:
                    args[key] = loads_lenient(raw)
                except ValueError:
                    args[key] = raw
        else:
            try:
                args = loads_lenient(inner) if inner.strip() else {}
            except ValueError:
                args = {"input": inner}
        calls.append(ToolCall(name=name, arguments=args if isinstance(args, dict) else {"input": args}))
    return calls


def parse_tool_calls(text: str, known: set[str] | None = None) -> ParsedText:
    """Split model text into reasoning, tool calls and the remaining answer text.

    Inside ``<tool_call>`` tags any name is taken. Fenced or bare JSON counts as a
    call only when it has a name and arguments, or names one of ``known`` tools, so
    an answer that merely contains JSON is not mistaken for a call.
    """

    def plausible(call: ToolCall, obj_text: str) -> bool:
        if known is not None and call.name in known:
            return True
        return any(f'"{k}"' in obj_text or f"'{k}'" in obj_text for k in ARG_KEYS)

    reasoning, rest = split_reasoning(text or "")
    calls: list[ToolCall] = []
    if "<tool_call>" in rest.lower():
        for body in _TOOL_BLOCK.findall(rest):
            body = _FENCE.sub(lambda m: m.group(1), body).strip()
            found = _function_tag_calls(body) if body.startswith("<function=") else _calls_from_blob(body)
            calls.extend(found)
        rest = _TOOL_BLOCK.sub("", rest)
        rest = re.sub(r"</?tool_call>", "", rest, flags=re.I).strip()
        return ParsedText(rest, calls, reasoning)
    if "<function=" in rest:
        calls = _function_tag_calls(rest)
        if calls:
            return ParsedText(_FUNCTION_TAG.sub("", rest).strip(), calls, reasoning)
    for m in _FENCE.finditer(rest):
        found = [c for c in _calls_from_blob(m.group(1)) if plausible(c, m.group(1))]
        if found:
            calls.extend(found)
            rest = rest.replace(m.group(0), "", 1)
    if calls:
        return ParsedText(rest.strip(), calls, reasoning)
    remaining = rest
    for s, e in reversed(_balanced_objects(rest)):
        found = [c for c in _calls_from_blob(rest[s:e]) if plausible(c, rest[s:e])]
        if found:
            calls[:0] = found
            remaining = remaining[:s] + remaining[e:]
    return ParsedText(remaining.strip(), calls, reasoning)
