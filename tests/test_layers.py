"""The layers, read from the source: imports point down, never in a circle.

The graph comes from `ast`, so it sees every import a module can make, including
those inside functions (a lazy import still ties two modules together); only
imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "wfnb"

#: what the headless core must never load, even lazily
HEAVY = ("IPython", "ipywidgets", "graphviz", "duckdb")
#: the core: YAML reading and the model up to the engine (the notebook and the
#: stores sit apart)
CORE = (
    "wfnb.yaml_nodes",
    "wfnb.model",
    "wfnb.parse",
    "wfnb.dag",
    "wfnb.instances",
    "wfnb.run",
    "wfnb.engine",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: Iterable[str] = ()) -> set[str]:
    """Every module name ``tree`` imports (absolute), TYPE_CHECKING blocks aside.
    The packages above an imported module are not counted: every import runs
    them, so they say nothing about layers."""
    known = set(modules)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                # `from pkg import sub` imports the submodule `pkg.sub`; else `pkg`
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> tuple[nx.DiGraph, dict[str, set[str]]]:
    modules = _modules()
    graph = nx.DiGraph()
    external: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.add_node(name)
        tree = ast.parse(path.read_text())
        imported = _imports(tree, name, path.name == "__init__.py", modules)
        external[name] = {imp.partition(".")[0] for imp in imported if imp not in modules}
        graph.add_edges_from((name, imp) for imp in imported if imp in modules and imp != name)
    return graph, external


def test_the_import_graph_has_no_cycle():
    graph, _ = _graph()
    cycles = sorted(" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph))
    assert cycles == []


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from wfnb.engine import Engine\n"
        "def f():\n    from wfnb.parse import parse_workflow\n"
    )
    found = _imports(tree, "wfnb.x", False)
    assert "wfnb.parse" in found
    assert "wfnb.engine" not in found


def test_the_core_never_imports_notebook_or_storage_libraries():
    graph, external = _graph()
    core = [name for name in graph if name.startswith(CORE) or name == "wfnb.errors"]
    for name in core:
        reached = {name, *nx.descendants(graph, name)}
        assert not any(mod.startswith("wfnb.notebook") for mod in reached), name
        heavy = {lib for mod in reached for lib in external[mod] if lib in HEAVY}
        assert not heavy, f"{name} reaches {sorted(heavy)}"


def test_modules_and_classes_stay_small():
    """Units that fit in a head: a module over ~600 lines or a class over ~400
    has more than one job."""
    too_big = []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > 600:
            too_big.append(f"module {name}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 400:
                too_big.append(f"class {name}.{node.name}")
    assert too_big == []
