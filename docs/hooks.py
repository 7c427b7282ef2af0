"""mkdocs hooks: the command reference and the HTTP API pages are written from the code when the
site is built (the parser of ``mcr-agent`` and the service's own OpenAPI document), so they cannot
drift from what the program does."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

GENERATED = {"reference/commands.md": "commands", "reference/http.md": "http"}
# setuptools maps tools/, memory/ and agents/ into the mcr namespace at install time; the API
# reference reads the source without importing it, so it is given the installed layout as links
API_LAYOUT = "build/docs-api"
MAPPED = {"agents": "agents", "memory": "memory", "tools": "tools"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def _command_section(path: list[str], parser: argparse.ArgumentParser, parent: argparse.ArgumentParser | None) -> str:
    title = " ".join(path)
    lines = [f"## `{title}`", ""]
    summary = _help_of(parent, path[-1]) if parent is not None else ""
    if summary or parser.description:
        lines += [summary or parser.description or "", ""]
    lines += ["```text", parser.format_help().rstrip(), "```", ""]
    for name, child in _subparsers(parser).items():
        lines.append(_command_section(path + [name], child, parser))
    return "\n".join(lines)


def commands_page() -> str:
    from mcr.cli.main import build_parser

    parser = build_parser()
    parts = [
        "# Command reference",
        "",
        "Every `mcr-agent` command and option, written from the program's own parser when this site is",
        "built (`mcr-agent COMMAND --help` prints the same).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for name, child in _subparsers(parser).items():
        parts.append(_command_section(["mcr-agent", name], child, parser))
    return "\n".join(parts)


def openapi() -> dict[str, Any]:
    """The service's OpenAPI document, from an app made on a scratch memory (nothing is served)."""
    import tempfile

    from mcr.service.app import make_app

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        app = make_app(None, media_roots=[], memory=scratch / "memory.db", trace_dir=scratch / "traces")
        return app.openapi()


def _schema_text(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[-1]}](#{schema['$ref'].rsplit('/', 1)[-1].lower()})"
    if "anyOf" in schema:
        return " or ".join(_schema_text(s, components) for s in schema["anyOf"])
    kind = schema.get("type", "object")
    if kind == "array":
        return f"list of {_schema_text(schema.get('items', {}), components)}"
    return str(kind)


def http_page() -> str:
    doc = openapi()
    components = doc.get("components", {}).get("schemas", {})
    out = [
        "# HTTP API",
        "",
        f"`mcr-agent serve` answers on these routes (OpenAPI {doc.get('openapi', '')}, version "
        f"{doc.get('info', {}).get('version', '')}); this page is written from the service's own OpenAPI "
        "document when the site is built, and a running service serves the same at `/openapi.json` and "
        "`/docs`. See [the service guide](../guides/service.md) for its security model.",
        "",
    ]
    for path, methods in doc.get("paths", {}).items():
        for method, op in methods.items():
            out += [f"## `{method.upper()} {path}`", "", op.get("summary", ""), ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required |", "| --- | --- | --- | --- |"]
                out += [
                    f"| `{p['name']}` | {p['in']} | {_schema_text(p.get('schema', {}), components)} | "
                    f"{'yes' if p.get('required') else 'no'} |"
                    for p in params
                ]
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, media in body.items():
                out += [f"Body ({ctype}): {_schema_text(media.get('schema', {}), components)}", ""]
            codes = ", ".join(f"`{c}` {r.get('description', '')}" for c, r in op.get("responses", {}).items())
            out += [f"Responses: {codes}", ""]
    if components:
        out += ["## Schemas", ""]
        for name, schema in components.items():
            out += [f"### {name}", "", "```json", json.dumps(schema, indent=1), "```", ""]
    return "\n".join(out)


def _mirror(source: Path, target: Path) -> None:
    """``target`` as a folder tree of links to the ``.py`` files of ``source`` (the loader does
    not descend into linked folders, so the folders are real)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_dir() and path.name != "__pycache__" and (path / "__init__.py").exists():
            _mirror(path, target / path.name)
        elif path.suffix == ".py" and not (target / path.name).exists():
            (target / path.name).symlink_to(path.resolve())


def api_layout(root: Path) -> Path:
    """``build/docs-api/mcr``: the installed layout of ``mcr`` as links to the source, with the
    top-level folders setuptools maps into it, so ``mcr.agents.Agent`` is found where it is
    imported from. Made afresh for every build, so a moved or removed module leaves nothing behind."""
    layout = root / API_LAYOUT
    shutil.rmtree(layout, ignore_errors=True)
    _mirror(root / "mcr", layout / "mcr")
    for name, folder in MAPPED.items():
        _mirror(root / folder, layout / "mcr" / name)
    return layout


@event_priority(100)  # before mkdocstrings reads its paths: a fresh clone has no build/ yet
def on_config(config: Any) -> Any:
    api_layout(Path(config["config_file_path"]).resolve().parent)
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site (their Markdown is written in ``on_page_read_source``)."""
    for path in GENERATED:
        if files.get_file_from_path(path) is None:
            files.append(File(path, config["docs_dir"], config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_read_source(page: Any, config: Any) -> str | None:
    kind = GENERATED.get(page.file.src_uri)
    if kind == "commands":
        return commands_page()
    if kind == "http":
        return http_page()
    return None
