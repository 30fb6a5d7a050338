"""The house keeps its shape: no import cycle among the project's modules, and every import points
down the room order.

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING:`. A room
imports only itself and the rooms before it:

    standard → bus → store → mappings → monitor → systems → reference → adapters → centre
    → console → hub

(`systems`, the systems file's schema, sits below the adapters because the adapters, the centre
and the hub are all handed it; `reference`, the reference lists and the cross-checks on them,
sits below the adapters, whose ingress runs the checks; `store` knows no room above it: the
rooms declare their tables on its metadata, and its migration scripts are explicit; `console`,
the operators' web pages, reads the monitor and the centre, and the hub mounts it.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = (
    "standard", "bus", "store", "mappings", "monitor", "systems", "reference", "adapters", "centre",
    "console", "hub",
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported project module
    line: int

    def where(self) -> str:
        return f"{module_file(self.source).relative_to(ROOT)}:{self.line}"


def module_file(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` means: itself, or the closest package above it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(modules: dict[str, Path]) -> Iterator[Import]:
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import name` imports the submodule pkg.name when there is one.
                names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for name in names:
                target = resolve(name, modules)
                if target is not None and target != module:
                    yield Import(module, target, node.lineno)


def room(module: str) -> str:
    return module.split(".")[0]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return list(imports(project_modules()))


def test_the_reader_sees_every_kind_of_import(edges: list[Import]) -> None:
    # Guards the test itself: imports inside functions and under TYPE_CHECKING are read.
    pairs = {(e.source, e.target) for e in edges}
    assert ("hub.simulators.demo", "hub.app") in pairs  # inside a function
    assert ("adapters.base", "adapters.ingress") in pairs  # under TYPE_CHECKING
    assert ("hub.worker", "adapters.egress") in pairs


def test_no_import_cycle_among_the_project_modules(edges: list[Import]) -> None:
    found = cycles(edges)
    shown = []
    for component in found:
        members = set(component)
        ties = sorted(
            {
                f"    {e.where()}: {e.source} imports {e.target}"
                for e in edges
                if e.source in members and e.target in members
            }
        )
        shown.append(f"  {', '.join(component)}:\n" + "\n".join(ties))
    assert not found, "modules that import each other in a circle:\n" + "\n".join(shown)


def test_every_import_points_down_the_room_order(edges: list[Import]) -> None:
    order = {name: position for position, name in enumerate(ROOMS)}
    upward = [
        f"  {e.where()}: {room(e.source)} imports {e.target} from the later room {room(e.target)}"
        for e in edges
        if order[room(e.target)] > order[room(e.source)]
    ]
    assert not upward, (
        "imports against the room order " + " → ".join(ROOMS) + ":\n" + "\n".join(upward)
    )


def test_the_adapters_import_mappings_through_its_public_face(edges: list[Import]) -> None:
    # mappings/__init__.py says what the rooms that apply its rules may use; its modules may
    # then be split or merged without touching the adapters.
    inner = sorted(
        {
            f"  {e.where()}: {e.source} imports {e.target}"
            for e in edges
            if room(e.source) in ("systems", "adapters", "centre")
            and e.target.startswith("mappings.")
        }
    )
    assert not inner, "imports of mappings' inner modules (import from mappings):\n" + "\n".join(
        inner
    )


def test_a_cycle_and_an_upward_import_would_be_found() -> None:
    made_up = [
        Import("adapters.a", "adapters.b", 1),
        Import("adapters.b", "adapters.c", 1),
        Import("adapters.c", "adapters.a", 1),
        Import("adapters.c", "standard.x", 1),
    ]
    assert cycles(made_up) == [["adapters.a", "adapters.b", "adapters.c"]]
    assert cycles(made_up[:2]) == []
