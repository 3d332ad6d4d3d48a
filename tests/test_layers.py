"""The packages form layers: no import cycle between them or between modules, and no
package imports one above it.

Every `import` counts, including those inside functions (a lazy import is still a
dependency: it only hides the cycle until the function runs), except those under
`if TYPE_CHECKING:`, which name a type for the reader and never run. The layers, lowest first,
follow the data flow: topology → simulator → policies and learners → training → live
runtime → federation → emulation → studies, experiments and commands.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("fl_crb", "emulation")

LAYERS: dict[str, int] = {
    "fl_crb.files": 0,
    "fl_crb.mec": 0,
    "fl_crb.topology": 1,
    "fl_crb.policies": 2,
    "fl_crb.learn": 2,
    "fl_crb.marl": 3,
    "fl_crb.training": 4,
    "fl_crb.envs": 5,
    "fl_crb.runtime": 5,
    "fl_crb.federation": 6,
    "emulation": 7,
    "fl_crb.studies": 8,
    "fl_crb.experiments": 8,
    "fl_crb.commands": 9,
    "fl_crb.cli": 10,
    "fl_crb.__main__": 11,
}
"""Rank of each package: a package may import only packages of a lower rank (or its own)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Project modules `path` imports, with relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    type_only = {
        id(inner)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in SOURCE_PACKAGES)
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (names that are not modules are dropped)."""
    files = {
        _module_name(path): path
        for package in SOURCE_PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    return {
        module: {name for name in _imports(path, module) if name in files and name != module}
        for module, path in files.items()
    }


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "fl_crb" else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _graph()


def test_no_import_cycle_between_packages(graph):
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[_package(module)].update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    assert _cycles(packages) == []


def test_no_import_cycle_between_modules(graph):
    assert _cycles(graph) == []


def test_every_package_has_a_layer(graph):
    assert sorted({_package(m) for m in graph} - set(LAYERS) - set(SOURCE_PACKAGES)) == []


def test_no_package_imports_one_above_it(graph):
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if _package(module) in LAYERS
        and LAYERS.get(_package(target), -1) > LAYERS[_package(module)]
    )
    assert upward == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """Guards the checker itself: a planted cycle and a planted upward edge are found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _package("fl_crb.mec.simulator") == "fl_crb.mec"
    assert LAYERS[_package("fl_crb.runtime.terminal")] < LAYERS["fl_crb.federation"]
