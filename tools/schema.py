"""JSON schemas for tools: from type hints and the Google-style docstring, through pydantic."""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from mcr.errors import MCRError
from mcr.types import TimeSpan

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?|Note)\s*:\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
SPAN_EXAMPLE = 'written start-end, e.g. "00:01:02-00:01:10"'


class ToolDefinitionError(MCRError, ValueError):
    """A tool written so that it cannot be offered to a model (a reserved name, a bad option)."""


class ToolDefinitionWarning(UserWarning):
    """A tool the model will find hard to use well: no docstring, or parameters it does not describe."""


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


def is_context_type(annotation: Any, context: type) -> bool:
    """``context`` (``ToolContext``), a subclass of it, or an optional one: a parameter the registry fills in."""
    if isinstance(annotation, str):
        return annotation.replace("None", "").strip(" |").split(".")[-1] == context.__name__
    if isinstance(annotation, type):
        return issubclass(annotation, context)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return optional and len(args) == 1 and is_context_type(args[0], context)


def _mentions(annotation: Any, kind: type, depth: int = 0) -> bool:
    if annotation is kind:
        return True
    return depth < 8 and any(_mentions(a, kind, depth + 1) for a in typing.get_args(annotation))


def _field_info(annotation: Any, default: Any) -> Any:
    """The pydantic ``FieldInfo`` a parameter carries (``Annotated[..., Field()]`` or ``= Field()``), if any."""
    from pydantic.fields import FieldInfo

    if isinstance(default, FieldInfo):
        return default
    found = [m for m in typing.get_args(annotation)[1:] if isinstance(m, FieldInfo)]
    if typing.get_origin(annotation) is typing.Annotated and found:
        return found[-1]
    return None


def _needs_alias(name: str) -> bool:
    """Names pydantic keeps for itself or treats as private: the field is renamed, the schema keeps the name."""
    from pydantic import BaseModel

    return name.startswith("_") or name.startswith("model_") or hasattr(BaseModel, name)


def _plain_default(value: Any) -> Any:
    if isinstance(value, TimeSpan):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain_default(v) for v in value]
    return value


@dataclass
class Arguments:
    """A tool's arguments model, and which Python parameter each of its fields fills."""

    model: Any
    parameters: dict[str, str]  # field name -> parameter name
    described: set[str]  # parameters with a description (docstring or Field)


def build_arguments_model(
    fn: Callable, name: str, skip: set[str], arg_docs: dict[str, str], hints: dict[str, Any]
) -> Arguments:
    """A pydantic model whose fields are the function's parameters (less those in ``skip``).

    A docstring line describes a parameter unless its ``Field`` has a description of its own.
    A parameter whose name pydantic reserves (``model_config``, ``schema``, ``_x``) gets a field of
    another name whose alias is the parameter's, so the model still reads and writes that name.
    """
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    described: set[str] = set()
    params = [p for p in inspect.signature(fn).parameters.values() if p.name not in skip]
    taken = {p.name for p in params}
    for i, p in enumerate(params):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to a model; name each parameter")
        if p.name not in hints:
            raise TypeError(f"tool {name!r}: parameter {p.name!r} needs a type hint")
        hint, default = hints[p.name], p.default
        info = _field_info(hint, default)
        extra: dict[str, Any] = {}
        doc = arg_docs.get(p.name) or None
        if info is not None and info.description:
            doc = info.description
        if _mentions(hint, TimeSpan):
            doc = f"{doc.rstrip('.')}, {SPAN_EXAMPLE}" if doc and "e.g." not in doc else doc or f"A span {SPAN_EXAMPLE}"
            if default is not inspect.Parameter.empty and info is None:
                extra["json_schema_extra"] = {"default": _plain_default(default)}
        if doc:
            extra["description"] = doc
            described.add(p.name)
        field = p.name
        if _needs_alias(p.name):
            field = f"field_{i}"
            while field in taken:
                field += "_"
            extra["alias"] = p.name
        mapping[field] = p.name
        if typing.get_origin(hint) is typing.Annotated:  # the user's Field comes last, so it wins
            base, *meta = typing.get_args(hint)
            hint = typing.Annotated[(base, Field(**extra), *meta)]
        elif extra:
            hint = typing.Annotated[hint, Field(**extra)]
        fields[field] = (hint, ... if default is inspect.Parameter.empty else default)
    model_name = "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name) if part) + "Arguments"
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())
    try:
        model = create_model(model_name, __config__=config, **fields)
    except RecursionError:
        raise ToolDefinitionError(
            f"tool {name!r}: an argument's type nests without end; give it a plain type"
        ) from None
    return Arguments(model, mapping, described)


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _inline_refs(node: Any, defs: dict, inside: tuple[str, ...], kept: set[str]) -> Any:
    """References inlined, except one to a model being inlined already (a model holding itself):
    that stays a ``$ref`` and its definition is kept in ``kept``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        rest = {k: _inline_refs(v, defs, inside, kept) for k, v in node.items() if k not in ("$ref", "$defs")}
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            key = ref.split("/")[-1]
            if key in inside:
                kept.add(key)
                return {"$ref": ref, **rest}
            return {**_inline_refs(defs.get(key, {}), defs, inside + (key,), kept), **rest}
        return rest
    if isinstance(node, list):
        return [_inline_refs(v, defs, inside, kept) for v in node]
    return node


def json_schema_of(model, name: str = "") -> dict:
    """The JSON schema of an arguments model, titles dropped and $defs inlined; a model that
    holds itself (a tree) keeps its definition under ``$defs``."""
    from pydantic.errors import PydanticUserError

    try:
        schema = model.model_json_schema()
    except PydanticUserError as exc:  # an argument type with no JSON form (an array, a file handle)
        first = str(exc).splitlines()[0]
        raise ToolDefinitionError(
            f"tool {name or model.__name__!r}: an argument cannot be described to a model: {first}"
        ) from None
    defs = schema.get("$defs", {})
    kept: set[str] = set()
    schema = _inline_refs(schema, defs, (), kept)
    kept_defs: dict[str, Any] = {}
    while kept - set(kept_defs):
        key = sorted(kept - set(kept_defs))[0]
        kept_defs[key] = _inline_refs(defs[key], defs, (key,), kept)
    schema = _strip_titles(schema)
    if kept_defs:
        schema["$defs"] = _strip_titles(kept_defs)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def doc_problems(
    name: str, has_doc: bool, shown: list[str], hidden: list[str], arg_docs: dict[str, str], described: set[str]
) -> list[str]:
    """What a tool's author should add or fix so the model can use it: one line each."""
    problems = []
    if not has_doc:
        problems.append(f"tool {name!r} has no docstring: the model sees only its name")
    for p in shown:
        if p not in described:
            problems.append(f"tool {name!r}: parameter {p!r} is not described (add it under Args: in the docstring)")
    for p in arg_docs:
        if p not in shown and p not in hidden:
            problems.append(f"tool {name!r}: the docstring describes {p!r}, which is not a parameter")
    return problems
