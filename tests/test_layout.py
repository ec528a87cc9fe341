"""The import structure the design page describes: no circles, ingress on its own, handlers
free of host adapters, modules a reader can hold. Read from the source with `ast`, so an
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers")
MAX_LINES = 650  # "about 600": the bound, with room for a docstring's growth


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules `name` imports (a `from pkg import mod` names the module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            wanted.add(base)
            wanted.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in wanted if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    return {name: _imports(name, path, modules) for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            # A package's __init__ re-exporting its own modules is not a circle of code.
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_face(cycle: list[str]) -> bool:
    """A package importing its own submodules to re-export them, and nothing more."""
    faces = [m for m in cycle if any(o.startswith(m + ".") for o in cycle)]
    return len(faces) == 1 and all(m == faces[0] or m.startswith(faces[0] + ".") for m in cycle)


def test_the_checker_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    circles = [c for c in _cycles(_graph()) if not _package_face(c)]
    assert circles == []


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        # Ingress answers hosts whatever the rest is doing: no UI, no sessions, no engines.
        ("bot.ingress", ("bot.web", "bot.sessions", "bot.agents", "bot.hosts", "handlers")),
        # Handlers get a host through the runtime's small API, never an adapter.
        (
            "handlers",
            (
                "bot.hosts.github",
                "bot.hosts.gitlab",
                "bot.hosts.local",
                "bot.hosts.local_store",
            ),
        ),
        # The decision is pure: no I/O layers below it.
        ("bot.decide", ("bot.hosts", "bot.db", "bot.outbox", "bot.web", "handlers")),
    ],
)
def test_layers_import_only_downwards(importer: str, forbidden: tuple[str, ...]) -> None:
    graph = _graph()
    offending = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name == importer or name.startswith(importer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )
    assert offending == []


def test_modules_a_reader_can_hold() -> None:
    long = {
        name: n
        for name, path in _sources().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
