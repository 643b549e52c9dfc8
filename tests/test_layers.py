"""The code's shape: modules in layers, each importing only its own layer and those below, and no
circle of imports anywhere (docs/architecture.md#layers). Read from the source with `ast`, every
import counted, those only for type checking and those inside functions included."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "edge"

# Top to bottom. A module belongs to the layer of the longest prefix that names it ("edge" names
# the package's own __init__ only).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("edge.__main__", "edge.cli", "edge.workers", "edge.server",
                      "edge.config_docs")),
    ("web service", ("edge.app", "edge.demo", "edge.home")),
    ("commands", ("edge.imports", "edge.preview", "edge.status", "edge.recent")),
    ("sources", ("edge.sources",)),
    ("service", ("edge.service",)),
    ("processing", ("edge.processing", "edge.source", "edge.capture", "edge.intake")),
    ("pipeline", ("edge.pipeline",)),
    ("upstreams", ("edge.upstreams",)),
    ("delivery", ("edge.delivery", "edge.metrics")),
    ("store", ("edge.store",)),
    ("base", ("edge", "edge.settings", "edge.events", "edge.logs", "edge.jsontext",
              "edge.useragent", "edge.assets")),
)  # fmt: skip


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(path: Path, modules: Mapping[str, Path]) -> Iterator[str]:
    """The project's modules `path` imports (`from pkg import module` names the module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module not in modules:
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                yield submodule if submodule in modules else module


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {
        name: {imported for imported in imports_of(path, modules) if imported != name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            within = module.startswith(prefix + ".") and prefix != "edge"
            if (module == prefix or within) and len(prefix) > best:
                best, found = len(prefix), index
    return found


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    assert [name for name in import_graph() if layer_of(name) < 0] == []


def test_no_module_imports_one_on_a_higher_layer() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} "
        f"({LAYERS[layer_of(imported)][0]})"
        for module, imported_modules in sorted(import_graph().items())
        for imported in sorted(imported_modules)
        if layer_of(imported) < layer_of(module)
    ]
    assert upward == []


def test_no_circle_of_imports() -> None:
    assert circles(import_graph()) == []


def test_processing_never_imports_a_source() -> None:
    graph = import_graph()
    below_sources = [name for name in graph if layer_of(name) > layer_of("edge.sources")]
    reaching = [
        f"{name} imports {imported}"
        for name in below_sources
        for imported in graph[name]
        if imported.startswith("edge.sources")
    ]
    assert reaching == []


def test_the_walk_sees_a_circle_and_an_upward_import_when_there_is_one() -> None:
    # the checks themselves can fail: a circle of three, and the store importing the pipeline
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert layer_of("edge.store.sqlite") > layer_of("edge.pipeline.mapping")
    assert layer_of("edge.sources.beacon") < layer_of("edge.service")
