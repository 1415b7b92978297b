"""The package's imports run one way: no cycle, no import up the layers, a
mock that stands alone, and packages whose public names (C{__all__}) exist.

Every module of C{genaiproxy} is read with L{ast}, so that every import
counts: at the top, under C{TYPE_CHECKING} and inside functions alike.  An
import names the module it loads: C{from genaiproxy.pkg import X} loads the
package's C{__init__} (which loads its modules in turn), and the module
C{genaiproxy.pkg.X} too when X is one; parent packages loaded on the way are
not counted (every module of a package would otherwise import itself).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import genaiproxy

ROOT = "genaiproxy"
PACKAGE_DIR = Path(genaiproxy.__file__).parent

# The layers, bottom first: a module may import its own layer and those
# below it.  testing.py (an in-memory proxy for tests) may use everything
# but the command line.
LAYERS = ("observe", "api", "config", "upstream", "limits", "forwarding", "server", "daemon",
          "testing", "cli")
# Outside the layers: the mock upstream imports only itself; the old entry
# point of the mock (a shim for python -m) imports only the mock; the
# package's own __init__ (its version) imports nothing of the package.
MOCK = "mock"
MOCK_SHIM = "mock_upstream"


@dataclass(frozen=True)
class Import:
    """One module loaded by an import statement of another."""

    importer: str
    target: str
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.importer} imports {self.target} (line {self.line}: {self.statement})"


def _module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _module_names()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _known(name: str) -> str:
    """The module a dotted name loads: itself, or its longest known prefix
    (for a name that is no module of ours, the package that would hold it)."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a C{from} import, relative ones resolved."""
    if not node.level:
        return node.module or ""
    base = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _imports_of(module: str) -> Iterator[Import]:
    """The modules of the package that C{module} imports, anywhere in it."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            names = [source, *(f"{source}.{alias.name}" for alias in node.names)]
        else:
            continue
        statement = ast.unparse(node)
        targets = {_known(name) for name in names if name == ROOT or name.startswith(ROOT + ".")}
        for target in sorted(targets):
            if target != module or isinstance(node, ast.Import):
                yield Import(module, target, node.lineno, statement)


IMPORTS = [found for module in MODULES for found in _imports_of(module)]


def _cycles() -> list[list[Import]]:
    """One cycle of imports through each group of modules that import each
    other (a strongly connected component, by Tarjan's algorithm)."""
    edges: dict[str, list[Import]] = {module: [] for module in MODULES}
    for found in IMPORTS:
        edges[found.importer].append(found)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for found in edges[module]:
            if found.target not in index:
                visit(found.target)
                low[module] = min(low[module], low[found.target])
            elif found.target in stack:
                low[module] = min(low[module], index[found.target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1 or any(found.target == module for found in edges[module]):
                groups.append(group)

    for module in MODULES:
        if module not in index:
            visit(module)
    return [_cycle_in(group, edges) for group in groups]


def _cycle_in(group: set[str], edges: dict[str, list[Import]]) -> list[Import]:
    """A shortest path of imports from the group's first module back to it."""
    start = min(group)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for found in edges[module]:
                if found.target == start:
                    return [*paths[module], found]
                if found.target in group and found.target not in paths:
                    paths[found.target] = [*paths[module], found]
                    following.append(found.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_no_import_cycle() -> None:
    """No module of genaiproxy imports itself again through others, even
    under TYPE_CHECKING or inside a function: the package can be read (and
    loaded) from the bottom up."""
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n\n".join(
        "\n".join(f"  {found}" for found in cycle) for cycle in cycles)


def _layer(module: str) -> str:
    """The layer (or special place) of a module: its first name below the package."""
    return module.split(".")[1] if module != ROOT else ROOT


def _upward(found: Import) -> str | None:
    """Why C{found} breaks the layering, or None when it does not."""
    importer, target = _layer(found.importer), _layer(found.target)
    if importer == MOCK:
        return None  # the mock's own rule, below
    if importer == ROOT:
        return "the package's __init__ imports nothing of the package"
    if importer == MOCK_SHIM:
        return None if target == MOCK else "the mock's old entry point imports only the mock"
    if importer not in LAYERS:
        return f"{importer} is in no layer: place it in LAYERS of {__name__}"
    if target in (ROOT, MOCK):
        return None
    if target not in LAYERS:
        return f"{target} is in no layer that others may import"
    if LAYERS.index(target) > LAYERS.index(importer):
        return f"{target} is above {importer}"
    return None


def test_imports_run_down_the_layers() -> None:
    """A module imports only from its own layer and those below it, in the
    order observe < api < config < upstream < limits < forwarding < server <
    daemon < testing < cli (genaiproxy.testing may use all but the command
    line); the package's version in genaiproxy/__init__.py is for all, and
    that __init__ imports nothing of the package; genaiproxy.mock_upstream,
    the mock's old entry point, imports only the mock."""
    problems = [f"  {found}: {why}" for found in IMPORTS if (why := _upward(found))]
    assert not problems, "imports up the layers:\n" + "\n".join(problems)


def test_mock_imports_only_itself() -> None:
    """The mock upstream (genaiproxy.mock) imports nothing from genaiproxy
    outside genaiproxy.mock, not even the version: it stands in for any
    gateway, and can be taken away whole."""
    problems = [f"  {found}" for found in IMPORTS
                if _layer(found.importer) == MOCK and _layer(found.target) != MOCK]
    assert not problems, "the mock imports the proxy:\n" + "\n".join(problems)


SUBPACKAGES = sorted(module for module in MODULES if module != ROOT and _is_package(module))


def _declares_all(module: str) -> bool:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return True
    return False


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_packages_say_their_public_names(package: str) -> None:
    """Every subpackage's __init__ says which names are its public ones
    (C{__all__}), and each of them can be imported from it."""
    assert _declares_all(package), f"{package} (its __init__.py) does not define __all__"
    loaded = importlib.import_module(package)
    missing = [name for name in loaded.__all__ if not hasattr(loaded, name)]
    assert not missing, f"{package}.__all__ names what it does not hold: {missing}"


def test_every_import_is_seen() -> None:
    """The walk finds the imports the layering rests on, at the top, under
    TYPE_CHECKING and inside functions: without them the tests above would
    pass on anything."""
    seen = {(found.importer, found.target) for found in IMPORTS}
    assert ("genaiproxy.server.resources", "genaiproxy.forwarding") in seen
    # Inside a function: the quickstart starts the mock only when asked.
    assert ("genaiproxy.cli.quickstart", "genaiproxy.mock") in seen
    assert {"genaiproxy.observe", "genaiproxy.cli.doctor", "genaiproxy.mock"} <= set(SUBPACKAGES)
