"""The import layers of DESIGN.md, checked on the source: every import (at module level, inside
a function, or by ``importlib.import_module("...")``) goes down the layers, memory never imports
perception, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mcr": "mcr", "tools": "mcr.tools", "memory": "mcr.memory", "agents": "mcr.agents"}

# Lowest first, by folder (docs/architecture.md). A module may import its own layer and the
# layers below it. "base" is every module at the root of mcr/ (the public face ``mcr`` aside).
LAYERS = [
    ("base", ()),
    ("media", ("mcr.media",)),
    ("stores and models", ("mcr.memory", "mcr.models", "mcr.m2la")),
    ("tools", ("mcr.tools",)),
    ("run", ("mcr.run",)),
    ("agents", ("mcr.agents",)),
    ("outputs", ("mcr.outputs",)),
    ("faces", ("mcr.service", "mcr.library", "mcr.eval", "mcr.train", "mcr.cli")),
]
# Packages of one layer that must not import each other.
APART = {"mcr.memory": ("mcr.models", "mcr.m2la", "mcr.tools"), "mcr.models": ("mcr.memory", "mcr.tools")}


def module_paths(root: Path = ROOT) -> dict[str, Path]:
    paths = {}
    for folder, name in PACKAGES.items():
        for path in (root / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            paths[".".join([name, *parts])] = path
    return paths


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source. ``from mcr import x`` names the
    module ``x``, not the package's lazy facade."""
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
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return {m for m in found if m in known and m not in (name, "mcr")}


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    known = module_paths(root)
    g = nx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        g.add_edges_from((name, target) for target in imports_of(name, path, known))
    return g


def layer_of(name: str) -> int:
    for i, (_, folders) in enumerate(LAYERS):
        if any(name == f or name.startswith(f + ".") for f in folders):
            return i
    if name.count(".") == 1 and name.startswith("mcr."):  # a module at the root of mcr/
        return 0
    raise AssertionError(f"{name} is in no layer: add its folder to LAYERS in tests/test_layers.py")


def upward_imports(g: nx.DiGraph) -> list[str]:
    return sorted(
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, b in g.edges
        if a != "mcr" and layer_of(b) > layer_of(a)
    )  # "mcr": the lazy facade


def crossed_siblings(g: nx.DiGraph) -> list[str]:
    def under(name: str, pkg: str) -> bool:
        return name == pkg or name.startswith(pkg + ".")

    return sorted(
        f"{a} imports {b}"
        for a, b in g.edges
        for pkg, apart in APART.items()
        if under(a, pkg) and any(under(b, x) for x in apart)
    )


def cycles(g: nx.DiGraph) -> list[str]:
    return [" -> ".join(c + [c[0]]) for c in nx.simple_cycles(g)]


GRAPH = import_graph()


def test_every_import_goes_down_the_layers():
    assert not upward_imports(GRAPH), "imports that go up a layer:\n" + "\n".join(upward_imports(GRAPH))


def test_memory_knows_nothing_of_perception_and_models_nothing_of_memory():
    assert not crossed_siblings(GRAPH), "\n".join(crossed_siblings(GRAPH))


def test_no_two_modules_import_each_other():
    assert not cycles(GRAPH), "import cycles:\n" + "\n".join(cycles(GRAPH))


@pytest.mark.parametrize(
    "a, b",
    [
        ("mcr.models", "mcr.models.local"),
        ("mcr.models", "mcr.models.gguf"),
        ("mcr.models", "mcr.models.replay"),
        ("mcr.models", "mcr.models.openai_server"),
        ("mcr.eval.runner", "mcr.eval.ray_runner"),
        ("mcr.cli.main", "mcr.eval.cli"),
        ("mcr.memory.index", "mcr.tools.shots"),
        ("mcr.tools.asr", "mcr.tools.stages"),
    ],
)
def test_pairs_that_must_not_import_each_other(a, b):
    assert a in GRAPH and b in GRAPH
    assert not (GRAPH.has_edge(a, b) and GRAPH.has_edge(b, a)), f"{a} and {b} import each other"


def test_the_graph_sees_imports_inside_functions():
    assert GRAPH.has_edge("mcr.models", "mcr.models.local")  # imported inside _transformers_model
    assert GRAPH.has_edge("mcr.cli.run", "mcr.agents")  # imported inside cmd_run


def test_errors_is_the_lowest_layer():
    assert set(GRAPH.successors("mcr.errors")) == set()


def test_the_checks_fail_on_a_tree_whose_memory_imports_tools(tmp_path):
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "memory" / "index.py").write_text("def f():\n    from mcr.tools import asr\n", encoding="utf-8")
    (tmp_path / "tools" / "asr.py").write_text("from mcr.memory.index import f\n", encoding="utf-8")
    g = import_graph(tmp_path)
    assert upward_imports(g) == [
        "mcr.memory.index (stores and models) imports mcr.tools (tools)",
        "mcr.memory.index (stores and models) imports mcr.tools.asr (tools)",
    ]
    assert crossed_siblings(g) == ["mcr.memory.index imports mcr.tools", "mcr.memory.index imports mcr.tools.asr"]
    assert len(cycles(g)) == 1 and {"mcr.memory.index", "mcr.tools.asr"} <= set(cycles(g)[0].split(" -> "))


def test_the_checks_fail_on_a_tree_whose_run_imports_an_output(tmp_path):
    for folder in ("mcr/run", "mcr/outputs", *PACKAGES):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "mcr" / "outputs" / "page.py").write_text("from mcr.run import result\n", encoding="utf-8")
    (tmp_path / "mcr" / "run" / "result.py").write_text(
        "def report():\n    from mcr.outputs.page import write\n", encoding="utf-8"
    )
    g = import_graph(tmp_path)
    assert upward_imports(g) == ["mcr.run.result (run) imports mcr.outputs.page (outputs)"]
    assert len(cycles(g)) == 1 and {"mcr.run.result", "mcr.outputs.page"} <= set(cycles(g)[0].split(" -> "))
    (tmp_path / "mcr" / "run" / "result.py").write_text("def report():\n    pass\n", encoding="utf-8")
    fixed = import_graph(tmp_path)
    assert upward_imports(fixed) == [] and cycles(fixed) == []


def test_no_import_cycle_with_the_benchmarks():
    """The benchmarks' scripts import each other from their own folder (each named by its file)."""
    known = {**module_paths(), **{path.stem: path for path in (ROOT / "benchmarks").glob("*.py")}}
    g = nx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        g.add_edges_from((name, target) for target in imports_of(name, path, known))
    assert g.has_edge("perception", "index_build") and g.has_edge("index_build", "mcr.memory")
    assert not cycles(g), "import cycles:\n" + "\n".join(cycles(g))
