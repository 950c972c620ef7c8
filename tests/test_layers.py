"""Layers of hrpose point only downwards, and no two modules import each other, even indirectly."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "lib" / "hrpose"

# The layer of every top-level part of hrpose, lowest first: a module may import its own package
# and any package of a LOWER layer, never one of the same layer or higher. Written down as data
# (not read from the code) so that the order is a decision, the one the README's Layout gives:
# errors -> utils, nms -> config -> codecs -> datasets -> models -> losses, postprocess
# -> evaluation -> engine -> apis (-> tools/, outside the package).
# Within the README's "datasets, codecs" line, codecs sit below datasets (datasets build their
# training targets with the codecs); within "models, losses, postprocess", models sit below
# (postprocess loads the rescore net); losses and postprocess stay apart. nms (OKS-NMS, NumPy or
# compiled) needs nothing of hrpose and sits with utils. "" is the hrpose package itself.
LAYERS = {
    "": 0,
    "errors": 0,
    "utils": 1,
    "nms": 1,
    "config": 2,
    "codecs": 3,
    "datasets": 4,
    "models": 5,
    "losses": 6,
    "postprocess": 6,
    "evaluation": 7,
    "engine": 8,
    "apis": 9,
}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    """Dotted name of a source file under root ('hrpose.utils.io'; a package's __init__ is the
    package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, module: str,
                   is_package: bool) -> list[tuple[str, list[str], int]]:
    """(absolute module name, names taken from it, line) of every import in a module: `import X`
    and `from X import a, b`, relative or absolute, function-local ones and those under
    `if TYPE_CHECKING:` included (an annotation-only import still ties two layers)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.append((source, [alias.name for alias in node.names], node.lineno))
    return found


def imported_modules(source: str, names: list[str], module: str,
                     modules: set[str]) -> set[str]:
    """The package modules one import statement loads: `from X import a` loads X.a when that is a
    module, and X itself for any other name. X being a package above the importing module adds
    nothing: Python has loaded it before the importing module started."""
    submodules = {f"{source}.{name}" for name in names} & modules
    loaded = set(submodules)
    takes_names_from_source = len(submodules) < len(names) or not names
    if takes_names_from_source and not module.startswith(source + "."):
        loaded.add(source)
    return loaded & modules


def import_graph(root: pathlib.Path) -> dict[str, list[tuple[str, int]]]:
    """For every module of the package at root: the package modules it imports, with the line."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        sources[module_name(path, root)] = (path, path.name == "__init__.py")
    graph = {}
    for module, (path, is_package) in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set()
        for source, names, line in imported_names(tree, module, is_package):
            edges.update((target, line) for target in imported_modules(source, names, module,
                                                                        set(sources))
                         if target != module)
        graph[module] = sorted(edges)
    return graph


def part_of(module: str) -> str:
    """The top-level part a module belongs to: 'hrpose.utils.io' -> 'utils'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, list[tuple[str, int]]], layers: dict[str, int]) -> list[str]:
    """One line per import of a module from its own layer (another package) or a higher one."""
    problems = []
    for module, edges in graph.items():
        own = part_of(module)
        for target, line in edges:
            other = part_of(target)
            if other != own and layers[other] >= layers[own]:
                problems.append(f"{module} (layer {layers[own]}, line {line}) imports {target} "
                                f"(layer {layers[other]})")
    return problems


def import_cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target, _ in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for module in graph:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return groups


def describe(graph: dict[str, list[tuple[str, int]]]) -> str:
    """Which module imports which, one line per importing module."""
    return "\n".join(f"{module} -> {', '.join(target for target, _ in edges)}"
                     for module, edges in graph.items() if edges)


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE_ROOT)


def test_every_part_of_the_package_has_a_layer(graph):
    unknown = sorted({part_of(module) for module in graph} - set(LAYERS))
    assert not unknown, f"packages without a layer in tests/test_layers.py LAYERS: {unknown}"


def test_imports_point_only_down(graph):
    print(describe(graph))
    problems = upward_imports(graph, LAYERS)
    assert not problems, "imports from the same or a higher layer:\n" + "\n".join(problems)


def test_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other:\n" + "\n".join(
        " <-> ".join(group) for group in cycles)


def _plant_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    """A throwaway package named hrpose under root with the given files (relative path -> text)."""
    package = root / "hrpose"
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def test_planted_upward_import_fails(tmp_path):
    package = _plant_package(tmp_path, {
        "__init__.py": '"""p"""\n',
        "utils/__init__.py": '"""u"""\n',
        "utils/io.py": '"""u"""\n\ndef f():\n    from ..engine import loop\n',
        "engine/__init__.py": '"""e"""\n',
        "engine/loop.py": '"""e"""\nfrom hrpose.utils import io\n',
    })
    planted = import_graph(package)
    problems = upward_imports(planted, LAYERS)
    assert problems == ["hrpose.utils.io (layer 1, line 4) imports hrpose.engine.loop (layer 8)"]


def test_planted_same_layer_import_fails(tmp_path):
    package = _plant_package(tmp_path, {
        "__init__.py": "",
        "losses/__init__.py": "from hrpose.postprocess.topdown import x\n",
        "postprocess/__init__.py": "",
        "postprocess/topdown.py": "x = 1\n",
    })
    problems = upward_imports(import_graph(package), LAYERS)
    assert problems == ["hrpose.losses (layer 6, line 1) imports hrpose.postprocess.topdown "
                        "(layer 6)"]


def test_planted_cycle_fails(tmp_path):
    package = _plant_package(tmp_path, {
        "__init__.py": "",
        "losses/__init__.py": "",
        "losses/a.py": "from .b import y\nx = 1\n",
        "losses/b.py": "from . import c\ny = 1\n",
        "losses/c.py": "from hrpose.losses.a import x\n",
        "losses/d.py": "from . import a\n",
    })
    planted = import_graph(package)
    assert upward_imports(planted, LAYERS) == []
    assert import_cycles(planted) == [["hrpose.losses.a", "hrpose.losses.b", "hrpose.losses.c"]]


def test_graph_reads_every_import_form(tmp_path):
    package = _plant_package(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "utils/__init__.py": "",
        "utils/io.py": "",
        "utils/paths.py": "",
        "config/__init__.py": "x = 1\n",
        "config/default.py": "y = 1\n",
        "engine/__init__.py": "",
        "engine/loop.py": "\n".join([
            "import hrpose.errors",                        # absolute, plain import
            "from hrpose.utils import io",                 # absolute, a submodule by name
            "from ..utils.paths import z",                 # relative to a higher package
            "from typing import TYPE_CHECKING",
            "if TYPE_CHECKING:",
            "    from ..config import x",                  # annotation-only: counted too
            "def f():",
            "    from hrpose.config.default import y",     # function-local
            "from . import run_dir",                       # own package: run_dir only
        ]) + "\n",
        "engine/run_dir.py": "",
    })
    planted = import_graph(package)
    assert planted["hrpose.engine.loop"] == [
        ("hrpose.config", 6), ("hrpose.config.default", 8), ("hrpose.engine.run_dir", 9),
        ("hrpose.errors", 1), ("hrpose.utils.io", 2), ("hrpose.utils.paths", 3)]


def test_planted_clean_package_passes(tmp_path):
    package = _plant_package(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "engine/__init__.py": "",
        "engine/loop.py": "from ..errors import E\nfrom ..utils import io\n",
        "utils/__init__.py": "",
        "utils/io.py": "from hrpose import errors\n",
    })
    planted = import_graph(package)
    assert upward_imports(planted, LAYERS) == []
    assert import_cycles(planted) == []
