"""JSON schemas for tools: from type hints and the Google-style docstring, through pydantic."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, Callable

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?|Note)\s*:\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and per-argument texts."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section = None
    current = None
    arg_indent = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section = m.group(1).lower()
            current, arg_indent = None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("args", "arguments", "parameters"):
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if arg_indent is None:
            arg_indent = indent
        am = _ARG_LINE.match(line.strip())
        if indent <= arg_indent and am:
            current = am.group(1).lstrip("*")
            args[current] = am.group(3).strip()
        elif current is not None:
            args[current] = (args[current] + " " + line.strip()).strip()
    text = "\n".join(description).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text, args


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _inline_refs(node: Any, defs: dict) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref.split("/")[-1], {})
            merged = {**_inline_refs(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def build_arguments_model(fn: Callable, name: str, skip_first: bool, arg_docs: dict[str, str]):
    """A pydantic model whose fields are the function's parameters (less an injected context)."""
    from pydantic import ConfigDict, Field, create_model

    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolved forward references
        raise TypeError(f"tool {name!r}: cannot resolve the type hints of {fn.__qualname__}: {exc}") from exc
    params = list(sig.parameters.values())
    if skip_first:
        params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to a model; name each parameter")
        if p.name not in hints:
            raise TypeError(f"tool {name!r}: parameter {p.name!r} needs a type hint")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=arg_docs.get(p.name) or None))
    model_name = "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name) if part) + "Arguments"
    return create_model(model_name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def json_schema_of(model) -> dict:
    """The JSON schema of an arguments model, titles dropped and $defs inlined."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    schema = _strip_titles(_inline_refs(schema, defs))
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema
