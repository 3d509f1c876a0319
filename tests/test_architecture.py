"""Static architecture checks on torchdiffusion's import graph, built by parsing the source (nothing is imported)."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
TOP = "torchdiffusion"
Graph = dict[str, set[str]]


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under node, lazy ones included; `if TYPE_CHECKING:` bodies (not their else) skipped."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and "TYPE_CHECKING" in (getattr(node.test, "id", 0), getattr(node.test, "attr", 0)):
        for child in node.orelse:
            yield from import_nodes(child)
    else:
        for child in ast.iter_child_nodes(node):
            yield from import_nodes(child)


def resolve(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, modules: set[str]) -> set[str]:
    """Absolute names an import statement loads; `from pkg import name` gives pkg.name if that is a module, else pkg."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        if node.level - 1 >= len(pkg):
            raise ValueError(f"{module}: relative import beyond the top-level package (line {node.lineno})")
        base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def raw_imports(src: Path, top: str) -> dict[str, set[str]]:
    """Module -> every absolute name it imports anywhere in its file (standard library and third party too), for every
    .py under src/top; a package is named by its __init__.py."""
    files = {}
    for path in sorted((src / top).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    out: dict[str, set[str]] = {}
    for mod, path in files.items():
        nodes = import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        out[mod] = {name for node in nodes for name in resolve(node, mod, path.name == "__init__.py", set(files))}
    return out


def ancestors(module: str) -> list[str]:
    """The packages whose __init__ runs before module: a.b.c -> [a.b, a]."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def build_graph(imports: dict[str, set[str]]) -> Graph:
    """Edges between the modules in imports: each import reaches the longest known module prefix of the name, plus
    that module's parent packages, except the importer itself and its own parents (already executing)."""
    graph: Graph = {mod: set() for mod in imports}
    for mod, names in imports.items():
        running = {mod, *ancestors(mod)}
        for name in names:
            target = next((m for m in [name, *ancestors(name)] if m in imports), None)
            if target is not None:
                graph[mod] |= {target} | {a for a in ancestors(target) if a not in running}
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly-connected components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    sccs: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
            if w in stack:
                low[v] = min(low[v], low[w])
        if low[v] == index[v]:
            at = stack.index(v)
            sccs.append(sorted(stack[at:]))
            del stack[at:]

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


def cycles(graph: Graph) -> list[str]:
    """One line per import cycle (an SCC of size > 1, or a self-loop), listing the edges that form it."""
    out = []
    for scc in sorted(strongly_connected(graph)):
        members = set(scc)
        if len(scc) > 1 or scc[0] in graph.get(scc[0], ()):
            edges = [f"{a} -> {b}" for a in scc for b in sorted(graph[a] & members)]
            out.append(f"{{{', '.join(scc)}}}: {'; '.join(edges)}")
    return out


def path_to(graph: Graph, start: str, goal: Callable[[str], bool]) -> list[str] | None:
    """A shortest import chain from start to a module satisfying goal (breadth-first), or None."""
    chains = {start: [start]}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, set()) - chains.keys()):
            chains[w] = chains[v] + [w]
            if goal(w):
                return chains[w]
            queue.append(w)
    return None


def under(prefix: str) -> Callable[[str], bool]:
    """Predicate: the module is prefix or inside it."""
    return lambda m: m == prefix or m.startswith(prefix + ".")


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return raw_imports(SRC, TOP)


@pytest.fixture(scope="module")
def graph(imports: dict[str, set[str]]) -> Graph:
    return build_graph(imports)


def test_no_import_cycles(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import cycles among torchdiffusion modules:\n  " + "\n  ".join(found)


def test_only_the_cli_imports_the_cli(graph: Graph) -> None:
    is_cli = under(f"{TOP}.cli")
    bad = [f"{m} -> {t}" for m in sorted(graph) if not is_cli(m) and m != f"{TOP}.__main__"
           for t in sorted(graph[m]) if is_cli(t)]
    assert not bad, "modules outside torchdiffusion.cli import the CLI:\n  " + "\n  ".join(bad)


def test_sampling_does_not_import_processes(graph: Graph) -> None:
    chains = [path_to(graph, m, under(f"{TOP}.processes")) for m in sorted(graph) if under(f"{TOP}.sampling")(m)]
    bad = [" -> ".join(c) for c in chains if c]
    assert not bad, "torchdiffusion.sampling reaches torchdiffusion.processes:\n  " + "\n  ".join(bad)


def test_library_takes_no_argparse(imports: dict[str, set[str]]) -> None:
    bad = sorted(m for m, names in imports.items() if not under(f"{TOP}.cli")(m) and any(map(under("argparse"), names)))
    assert not bad, "modules outside torchdiffusion.cli import argparse:\n  " + "\n  ".join(bad)


def test_graph_builder_on_a_synthetic_package(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "from . import b\n\ndef f():\n    from .c import g  # lazy\n    return g\n",
        "pkg/b.py": "import os\nfrom pkg.a import f\n",
        "pkg/c.py": ("import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\nelse:\n    import json\n\n"
                     "def g():\n    if TYPE_CHECKING:\n        import pkg.b\n"
                     "    import pkg.sub.d  # lazy: reaches pkg.sub's __init__ too, not pkg's (already running)\n"
                     "    import argparse\n"),
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "from .. import c\nfrom ..sub import e\nfrom . import *\n",
        "pkg/sub/e.py": "X = 1\n",
    }
    (tmp_path / "pkg/sub").mkdir(parents=True)
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    imports = raw_imports(tmp_path, "pkg")
    assert imports["pkg.c"] == {"typing", "json", "pkg.sub.d", "argparse"}  # TYPE_CHECKING body skipped, else kept
    g = build_graph(imports)
    assert g == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.sub.d", "pkg.sub"},
                 "pkg.sub": set(), "pkg.sub.d": {"pkg.c", "pkg.sub.e", "pkg.sub"}, "pkg.sub.e": set()}
    assert cycles(g) == ["{pkg.a, pkg.b}: pkg.a -> pkg.b; pkg.b -> pkg.a",
                         "{pkg.c, pkg.sub.d}: pkg.c -> pkg.sub.d; pkg.sub.d -> pkg.c"]
    assert cycles({"x": {"x"}}) == ["{x}: x -> x"]
    assert path_to(g, "pkg", under("pkg.sub")) == ["pkg", "pkg.a", "pkg.c", "pkg.sub"]
    assert path_to(g, "pkg.sub.e", under("pkg.a")) is None
    with pytest.raises(AssertionError, match="pkg.a -> pkg.b; pkg.b -> pkg.a"):
        test_no_import_cycles(g)
    fake = {"torchdiffusion.sampling.x": {"torchdiffusion.y"}, "torchdiffusion.y": {"torchdiffusion.processes"},
            "torchdiffusion.processes": set(), "torchdiffusion.z": {"torchdiffusion.cli.main"}}
    with pytest.raises(AssertionError, match="sampling.x -> torchdiffusion.y -> torchdiffusion.processes"):
        test_sampling_does_not_import_processes(fake)
    with pytest.raises(AssertionError, match="torchdiffusion.z -> torchdiffusion.cli.main"):
        test_only_the_cli_imports_the_cli(fake)
    with pytest.raises(AssertionError, match=r"argparse:\s+torchdiffusion\.z(?!\s+torchdiffusion)"):
        test_library_takes_no_argparse({"torchdiffusion.z": {"argparse"}, "torchdiffusion.cli": {"argparse"}})
    with pytest.raises(ValueError, match="beyond the top-level"):
        (tmp_path / "pkg/sub/e.py").write_text("from .... import z\n")
        raw_imports(tmp_path, "pkg")
