"""Imports between the modules follow the layers: pairs that once imported each other no longer do,
and ``mcr.errors`` (the lowest layer) imports nothing from ``mcr``. Imports inside functions count."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mcr": "mcr", "tools": "mcr.tools", "memory": "mcr.memory", "agents": "mcr.agents"}


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of this project it imports explicitly (``importlib.import_module("...")`` too)."""
    paths = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            paths[".".join([name, *parts])] = path
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)  # ``from pkg import submodule``
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant)):
                found.add(str(node.args[0].value))
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


GRAPH = import_graph()


@pytest.mark.parametrize("a, b", [
    ("mcr.models", "mcr.models.local"), ("mcr.models", "mcr.models.gguf"), ("mcr.models", "mcr.models.replay"),
    ("mcr.models", "mcr.models.openai_server"), ("mcr.eval.runner", "mcr.eval.ray_runner"),
    ("mcr.cli", "mcr.eval.cli"),
])
def test_no_import_cycle(a, b):
    assert a in GRAPH and b in GRAPH
    assert not (b in GRAPH[a] and a in GRAPH[b]), f"{a} and {b} import each other"


def test_graph_sees_imports_inside_functions():
    assert "mcr.models.local" in GRAPH["mcr.models"]  # imported inside _transformers_model
    assert "mcr.eval.cli" in GRAPH["mcr.cli"]  # importlib.import_module("mcr.eval.cli")


def test_errors_is_the_lowest_layer():
    assert GRAPH["mcr.errors"] == set()
