"""No import cycles among the project's modules (issue 16): the import graph of rollout/,
reward/, learner/ and orchestrator/ is read from the source (AST), function-level imports
included, so a cycle hidden inside a function (`import` deferred to dodge a circular import)
counts too. An edge points at the module a statement loads: `from rollout.tiny import world`
at rollout/tiny/world.py, `from rollout.models.base import Policy` at rollout/models/base.py."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rollout", "reward", "learner", "orchestrator")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_modules(name: str, source: str, modules, is_package: bool = False) -> set[str]:
    """The project modules (of `modules`) that module `name` imports, wherever the statement sits."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from ..models import y`
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # a submodule if there is one, else a name of `base`
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: imported_modules(name, path.read_text(), modules, path.name == "__init__.py")
        for name, path in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected component that has one (Tarjan)."""
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def connect(v):  # recursion depth ≤ number of modules (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = {stack.pop()}
            while v not in scc:
                scc.add(stack.pop())
            on_stack.difference_update(scc)
            if len(scc) > 1:
                sccs.append(scc)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, scc) for scc in sccs]


def _cycle_in(graph: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first back to it)."""
    start = min(scc)
    parent, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & scc):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {scc}")


def test_the_checker_finds_a_cycle_and_reads_function_level_and_relative_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    modules = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}
    source = "import os\ndef f():\n    from ..a import x\n    from . import b\n    import pkg.sub\n"
    assert imported_modules("pkg.sub.c", source, modules) == {"pkg.a", "pkg.sub.b", "pkg.sub"}
    # on the project: rollout/policy.py imports the model families only inside _model_module
    assert {"rollout.models.tiny", "rollout.models.flux", "rollout.models.sd3"} <= import_graph()[
        "rollout.policy"
    ]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    listed = "\n".join(" -> ".join(cycle) for cycle in cycles)
    assert not cycles, f"import cycles (each a -> b means a imports b):\n{listed}"
