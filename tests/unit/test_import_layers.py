"""The package's import graph: layers point one way and no module imports itself in a circle.

The graph is read from the source with :mod:`ast`, so it sees every ``import``:
module level, under ``if TYPE_CHECKING:`` and inside functions alike (an import
moved into a function to dodge a cycle is still a cycle). Only the root
package's ``__init__`` is left out: it re-exports the public API, so every
module "reaches" it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import amqptasks

PACKAGE = Path(amqptasks.__file__).resolve().parent
ROOT = "amqptasks"

#: Modules below the worker: none of them may import ``amqptasks.worker``.
BELOW_WORKER = (
    "amqptasks.protocol",
    "amqptasks.topology",
    "amqptasks.transport",
    "amqptasks.policies",
    "amqptasks.task",
    "amqptasks.publishing",
    "amqptasks.request",
    "amqptasks._retrypublish",
    "amqptasks._client",
    "amqptasks.app",
    "amqptasks.config",
    "amqptasks.registry",
    "amqptasks.routing",
    "amqptasks.results",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, target: str, known: set[str]) -> str | None:
    """The known module ``target`` names: itself, or the package holding the name."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module ``pkg.mod``.
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for target in targets:
            if not target.startswith(ROOT):
                continue
            resolved = _resolve(name, target, known)
            if resolved and resolved not in (name, ROOT):
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the amqptasks modules it imports (anywhere in its source)."""
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_sees_imports_everywhere() -> None:
    graph = import_graph()
    # module level, TYPE_CHECKING-only and function-level imports all count
    assert "amqptasks.task" in graph["amqptasks.app"]
    assert "amqptasks.config" in graph["amqptasks.transport.sync"]
    assert "amqptasks.app" in graph["amqptasks._appref"]


def test_lower_layers_never_import_the_worker() -> None:
    graph = import_graph()
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if any(_in(module, lower) for lower in BELOW_WORKER)
        for target in targets
        if _in(target, "amqptasks.worker")
    )
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
