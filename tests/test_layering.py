"""The packages stand on floors: nothing imports a floor above it, and no modules import each other.

Floors, bottom up: ``mtrl_plasticity`` (the ground floor); ``agents`` and ``envs`` (beside each
other, neither importing the other); ``orchestrator``; ``analysis``. The imports are read from
the source (``ast``), module level and inside functions alike; imports under
``if TYPE_CHECKING:`` only name types and do not count. A function-local import is allowed only
where it keeps a heavy module out of a command's start-up, and says so in a comment.

``python tests/test_layering.py`` prints which package imports which.
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = {"mtrl_plasticity": 0, "agents": 1, "envs": 1, "orchestrator": 2, "analysis": 3}
HEAVY = {"torch", "ray", "matplotlib", "rliable", "pandas", "scipy", "gymnasium", "minigrid",
         "wandb", "mlflow"}
"""Third-party packages whose import a command's start-up does without (W&B and MLflow: an optional extra)."""
CONSOLE_ENTRY = "analysis.console"
"""The console script's module: it installs its SIGTERM handler, then imports the commands inside its function."""


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    """A project module, or the top-level name of a third-party package."""
    line: int
    local: bool
    """Inside a function."""
    commented: bool


def modules() -> dict[str, str]:
    """``{module name: file}`` of every module of the packages."""
    found = {}
    for package in FLOORS:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                    found[module] = path
    return found


def _resolve(name: str, known: dict[str, str]) -> str:
    """The project module ``name`` belongs to, or its top-level package for a third-party name."""
    if name.split(".")[0] not in FLOORS:
        return name.split(".")[0]
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports(known: dict[str, str]) -> list[Import]:
    out = []
    for module, path in known.items():
        source = open(path, encoding="utf-8").read()
        lines = source.splitlines()
        tree = ast.parse(source)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.level:
                continue  # the project uses absolute imports only (checked below)
            else:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            local = type_only = False
            parent = parents.get(node)
            while parent is not None:
                local |= isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
                type_only |= isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test)
                parent = parents.get(parent)
            if type_only:
                continue
            commented = _commented(lines, node.lineno)
            for name in names:
                target = _resolve(name, known)
                if target and target != module and target != "__future__":
                    out.append(Import(module, target, node.lineno, local, commented))
    return out


def _commented(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or on the line above the run of imports it belongs to."""
    if "#" in lines[lineno - 1]:
        return True
    above = lineno - 2
    while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
        if "#" in lines[above]:
            return True
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def package(module: str) -> str:
    return module.split(".")[0]


def heavy_modules(edges: list[Import]) -> set[str]:
    """Project modules that import a heavy package at module level, directly or through another module."""
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for edge in edges:
            if not edge.local and edge.source not in heavy and (edge.target in HEAVY or edge.target in heavy):
                heavy.add(edge.source)
                changed = True
    return heavy


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    graph = defaultdict(set)
    for edge in edges:
        if package(edge.target) in FLOORS:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(edges: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in FLOORS}
    for edge in edges:
        if package(edge.target) in FLOORS and package(edge.target) != package(edge.source):
            graph[package(edge.source)].add(package(edge.target))
    return graph


EDGES = imports(modules())


def test_no_package_imports_a_floor_above_it_or_beside_it():
    upward = [f"{e.source}:{e.line} imports {e.target}" for e in EDGES
              if package(e.target) in FLOORS and package(e.target) != package(e.source)
              and FLOORS[package(e.target)] >= FLOORS[package(e.source)]]
    assert upward == []


def test_no_modules_import_each_other():
    assert cycles(EDGES) == []


def test_imports_inside_functions_only_keep_heavy_modules_out_of_start_up():
    heavy = heavy_modules(EDGES)
    bad = [f"{e.source}:{e.line} imports {e.target} inside a function"
           + ("" if e.commented else " without a comment saying why")
           for e in EDGES if e.local and (not e.commented or (e.target not in HEAVY and e.target not in heavy
                                                               and e.source != CONSOLE_ENTRY))]
    assert bad == []


def test_the_ground_floor_imports_no_heavy_package():
    assert not [e for e in EDGES if package(e.source) == "mtrl_plasticity" and e.target in HEAVY]


def test_the_project_imports_itself_absolutely():
    relative = []
    for module, path in modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        relative += [f"{module}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == []


if __name__ == "__main__":
    graph = package_graph(EDGES)
    for name in FLOORS:
        print(f"{name:16} -> {', '.join(sorted(graph[name])) or '(nothing of the project)'}")
    local = [e for e in EDGES if e.local]
    print(f"module cycles: {len(cycles(EDGES))}; imports inside functions: {len(local)}")
    for edge in local:
        print(f"  {edge.source}:{edge.line} -> {edge.target}")
    sys.exit(0)
