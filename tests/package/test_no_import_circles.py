"""No import circles among minigan's modules (minigan/ and kernels/, the latter as minigan.kernels).

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` that
names a minigan module, at module level *and inside functions*. A function-level import that
only dodges a circle is still a circle, so it is counted; the lazy imports that are fine (of
optional or heavy libraries: cupy, numba, numba.cuda, matplotlib, mpi4py ...) are not
minigan modules and never enter the graph, and a lazy import of a heavy minigan module for
import speed (the Numba kernels) is fine exactly when it closes no circle. No allow-list.

Edges, as Python runs them: ``import a.b.c`` / ``from a.b import c`` runs the packages a and
a.b and the module a.b.c, so the importer depends on each of them, except on its own parent
packages (Python has started those before the importer runs, so they cannot be half-made
because of it); ``from a.b import name`` where ``name`` is no module depends on a.b itself,
parent or not.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"minigan": ROOT / "minigan", "minigan.kernels": ROOT / "kernels"}


def module_files() -> dict:
    """Dotted module name -> its file, for minigan/ and kernels/ (as minigan.kernels)."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package] + parts)] = path
    return found


def _prefixes(name: str):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(name: str, path: Path, modules: set) -> dict:
    """Every minigan module ``name`` depends on -> the first line that imports it."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    parents = set(_prefixes(name)[:-1])
    edges = {}

    def depend(target: str, line: int, explicit: bool):
        # the packages on the way run too; an importer's own parents are already running
        for prefix in _prefixes(target):
            if prefix in modules and prefix != name and (prefix not in parents or (explicit and prefix == target)):
                edges.setdefault(prefix, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                depend(alias.name, node.lineno, explicit=False)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    depend(sub, node.lineno, explicit=False)
                else:   # a name defined in the module (or package) base
                    depend(base, node.lineno, explicit=True)
    return edges


def import_graph() -> dict:
    files = module_files()
    modules = set(files)
    return {name: imports_of(name, path, modules) for name, path in files.items()}


def circles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each as a list
    of its modules, sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(graph: dict, component: list) -> str:
    """One circle of ``component`` spelled out with file lines: a -> b (line n) -> ... -> a."""
    members = set(component)
    start = component[0]
    # breadth-first from start back to start, inside the component
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, line in sorted(graph[v].items()):
                if w == start:
                    steps, u = [(v, w, line)], v
                    while previous[u] is not None:
                        steps.append((previous[u][0], u, previous[u][1]))
                        u = previous[u][0]
                    return " -> ".join([start] + [f"{b} (line {ln} of {a})" for a, b, ln in reversed(steps)])
                if w in members and w not in previous:
                    previous[w] = (v, line)
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start}")


def test_the_package_has_no_import_circle():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(
        f"among {', '.join(c)}: {describe(graph, c)}" for c in found)


def test_the_walk_sees_lazy_imports_parents_and_from_imports(tmp_path):
    """The walker itself on a made-up package: a circle closed only by a function-level import
    is found, a package __init__ that imports its own submodules is none, and a module that
    imports a sibling's package runs that package's __init__ (an edge)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "pkg/__init__.py": "from . import a\n",
        "pkg/a.py": "from .b import f\n",
        "pkg/b.py": "def f():\n    from . import a  # lazy, still a circle\n    return a\n",
        "pkg/sub/__init__.py": "from . import c\n",
        "pkg/sub/c.py": "from .. import d\n",
        "pkg/d.py": "import numpy\nimport pkg.sub.e\n",
        "pkg/sub/e.py": "X = 1\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    names = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py",
             "pkg.sub": pkg / "sub" / "__init__.py", "pkg.sub.c": pkg / "sub" / "c.py", "pkg.d": pkg / "d.py",
             "pkg.sub.e": pkg / "sub" / "e.py"}
    graph = {n: imports_of(n, p, set(names)) for n, p in names.items()}
    assert graph["pkg"] == {"pkg.a": 1}
    assert graph["pkg.b"] == {"pkg.a": 2}                  # the function-level import counts
    assert graph["pkg.sub.c"] == {"pkg.d": 1}              # its parents pkg, pkg.sub: not edges
    assert graph["pkg.d"] == {"pkg.sub": 2, "pkg.sub.e": 2}   # numpy is no module of ours
    found = circles(graph)
    # pkg.sub -> c -> d -> pkg.sub (d runs sub's __init__), and a <-> b through the lazy import
    assert found == [["pkg.a", "pkg.b"], ["pkg.d", "pkg.sub", "pkg.sub.c"]]
    text = describe(graph, found[1])
    assert text.startswith("pkg.d -> ") and text.endswith("pkg.d (line 1 of pkg.sub.c)"), text


def test_the_walk_covers_every_module_and_the_known_dependencies():
    """The real graph has every file and the edges the seam is built on (so an empty graph
    cannot pass the circle test): layers -> backend -> backends; the CUDA kernel files ->
    kernels.cuda_common -> backends; the CuPy backend -> the registration table (lazily)."""
    graph = import_graph()
    assert len(graph) == len(list((ROOT / "minigan").rglob("*.py"))) + len(list((ROOT / "kernels").rglob("*.py")))
    assert "minigan.backend" in graph["minigan.nn.conv"]
    assert "minigan.backends.numpy_backend" in graph["minigan.backend"]
    assert "minigan.kernels.cuda_common" in graph["minigan.kernels.cuda_im2col"]
    assert "minigan.backends" in graph["minigan.kernels.cuda_common"]
    assert "minigan.kernels.cuda" in graph["minigan.backends.cupy_backend"]     # a function-level import
    assert "minigan.kernels.cpu" in graph["minigan.backends.numpy_backend"]     # likewise
    assert "minigan.nn.dcgan" in graph["minigan.nn"] and "minigan.nn.init" in graph["minigan.nn.linear"]
    assert not {"minigan.nn.conv", "minigan.nn.linear", "minigan.nn.norm"} & set(graph["minigan.nn.init"])


def test_every_package_the_walk_sees_is_installed():
    """pyproject lists packages by hand: a new package folder (minigan/backends ...) missing there
    would import from a source tree and fail after ``pip install .``."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in module_files().items() if path.name == "__init__.py"}
    assert packages == listed
