"""Every key of the default config tree is read, by its full dotted path, in the library or tools.

A static reading of the code (lib/hrpose outside config/, tools/): each chain of upper-case
attributes or string subscripts (``cfg.TEST.FLIP_TEST``, ``cfg["TEST"]["FLIP_TEST"]``,
``getattr(node, "KEY")``, ``extra[f"STAGE{n}"]``) is resolved to a full path. A chain starts at
the root when its first part is a top-level key read from a name with "cfg" or "config" in it;
otherwise it starts at a name bound to a sub-node, by an assignment in the same function
(``extra = cfg.MODEL.EXTRA``) or by a call that passes the sub-node as an argument
(``StageSpec.from_cfg(extra.STAGE2, ...)`` binds the ``node`` parameter of that method).
A key counts as read only when a resolved chain names all of it, so a key whose last part is
read elsewhere (``TEST.SHUFFLE`` beside ``TRAIN.SHUFFLE``) is still found unread.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field

from hrpose.config import get_default_config
from hrpose.config.model_extras import MODEL_EXTRAS

KEY_PART = re.compile(r"[A-Z][A-Z0-9_]*")
# A part written with an f-string ("STAGE{n}") becomes a pattern.
FORMATTED_PART = "[A-Z0-9_]+"


def leaf_keys(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def all_keys() -> set[str]:
    keys = set(leaf_keys(get_default_config()))
    for make_extra in MODEL_EXTRAS.values():
        keys |= {f"MODEL.EXTRA.{k}" for k in leaf_keys(make_extra())}
    return keys


def key_part(node: ast.expr, loop_values: dict[str, set[str]]) -> str | None:
    """The regex of one key part written as a string, an f-string or a loop variable over
    strings (``for name in ("A", "B")``); None if it is not a key."""
    if isinstance(node, ast.Name) and node.id in loop_values:
        return "(?:" + "|".join(re.escape(v) for v in sorted(loop_values[node.id])) + ")"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value) if KEY_PART.fullmatch(node.value) else None
    if isinstance(node, ast.JoinedStr):
        pieces = [re.escape(v.value) if isinstance(v, ast.Constant) else FORMATTED_PART
                  for v in node.values]
        return "".join(pieces)
    return None


def split_chain(node: ast.expr, loop_values: dict[str, set[str]]) -> tuple[ast.expr, list[str]]:
    """(root expression, key parts as regexes) of an access chain such as cfg.TEST["X"]."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute) and KEY_PART.fullmatch(node.attr):
            parts.append(re.escape(node.attr))
            node = node.value
        elif isinstance(node, ast.Subscript) and key_part(node.slice, loop_values) is not None:
            parts.append(key_part(node.slice, loop_values))
            node = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2
              and key_part(node.args[1], loop_values) is not None):
            parts.append(key_part(node.args[1], loop_values))
            node = node.args[0]
        else:
            return node, parts[::-1]


def root_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


@dataclass
class Scope:
    """One function (or a module's top level): its sub-node bindings by name."""

    class_name: str | None
    params: list[str] = field(default_factory=list)
    offset: int = 0  # leading self/cls parameters a call does not pass
    bindings: dict[str, set[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(set))
    # Loop variables over string constants: for name in ("NUM_BLOCKS", "NUM_CHANNELS").
    loop_values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


class CodeReading:
    """The full key paths the code reads, with sub-node bindings followed to a fixed point."""

    def __init__(self, trees: list[ast.Module], top_level: set[str]):
        self.top_level = top_level
        self.scopes: dict[ast.AST, Scope] = {}
        self.defs: dict[tuple[str | None, str], list[ast.AST]] = defaultdict(list)
        self.parent_scope: dict[ast.AST, ast.AST] = {}
        for tree in trees:
            self._index(tree, tree, None)
        self.trees = trees

    def _index(self, node: ast.AST, scope_node: ast.AST, class_name: str | None) -> None:
        if scope_node not in self.scopes:
            self.scopes[scope_node] = Scope(class_name)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                self._index(child, scope_node, child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorators = {root_name(d) for d in child.decorator_list}
                params = [a.arg for a in child.args.posonlyargs + child.args.args]
                offset = 1 if class_name and "staticmethod" not in decorators else 0
                self.scopes[child] = Scope(class_name, params, offset)
                self.defs[(class_name, child.name)].append(child)
                self.parent_scope[child] = scope_node
                self._index(child, child, class_name)
            else:
                self.parent_scope[child] = scope_node
                self._note_loop(child, self.scopes[scope_node])
                self._index(child, scope_node, class_name)

    @staticmethod
    def _note_loop(node: ast.AST, scope: Scope) -> None:
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name) \
                and isinstance(node.iter, (ast.Tuple, ast.List)):
            names = [e.value for e in node.iter.elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if names and len(names) == len(node.iter.elts):
                scope.loop_values[node.target.id].update(names)

    def _scope_of(self, node: ast.AST) -> Scope:
        return self.scopes[self.parent_scope[node]]

    def resolve(self, node: ast.expr) -> set[tuple[str, ...]]:
        """Full paths (tuples of part regexes) an expression may denote."""
        scope = self._scope_of(node)
        root, parts = split_chain(node, scope.loop_values)
        if not parts:
            # A bare name passes on what it is bound to (a sub-node handed to a function).
            return set(scope.bindings.get(node.id, set())) if isinstance(node, ast.Name) else set()
        if (parts[0] in self.top_level
                and re.search("cfg|config", root_name(root))):
            return {tuple(parts)}
        if isinstance(root, ast.Name):
            bound = scope.bindings.get(root.id, set())
            return {prefix + tuple(parts) for prefix in bound}
        return set()

    def _callees(self, call: ast.Call) -> list[ast.AST]:
        func = call.func
        if isinstance(func, ast.Name):
            return self.defs.get((None, func.id), [])
        if not isinstance(func, ast.Attribute):
            return []
        receiver = root_name(func.value) if isinstance(func.value, ast.Name) else ""
        if receiver in ("self", "cls"):
            return self.defs.get((self._scope_of(call).class_name, func.attr), [])
        if receiver[:1].isupper():
            return self.defs.get((receiver, func.attr), [])
        return [d for (_, name), defs in self.defs.items() if name == func.attr for d in defs]

    def _bind_once(self) -> bool:
        changed = False
        for tree in self.trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name):
                    paths = self.resolve(node.value)
                    bindings = self._scope_of(node).bindings[node.targets[0].id]
                    changed |= not paths <= bindings
                    bindings |= paths
                elif isinstance(node, ast.Call):
                    changed |= self._bind_call(node)
        return changed

    def _bind_call(self, call: ast.Call) -> bool:
        changed = False
        for callee in self._callees(call):
            scope = self.scopes[callee]
            params = scope.params[scope.offset:]
            pairs = list(zip(params, call.args)) + [(k.arg, k.value) for k in call.keywords]
            for param, value in pairs:
                paths = self.resolve(value)
                if param and paths and not paths <= scope.bindings[param]:
                    scope.bindings[param] |= paths
                    changed = True
        return changed

    def read_paths(self) -> set[tuple[str, ...]]:
        while self._bind_once():
            pass
        paths: set[tuple[str, ...]] = set()
        for tree in self.trees:
            for node in ast.walk(tree):
                if isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
                    paths |= self.resolve(node)
        return paths


def read_keys(repo_root) -> set[tuple[str, ...]]:
    files = [p for p in (repo_root / "lib" / "hrpose").rglob("*.py") if "config" not in p.parts]
    files += sorted((repo_root / "tools").glob("*.py"))
    trees = [ast.parse(p.read_text(), filename=str(p)) for p in files]
    return CodeReading(trees, set(get_default_config().keys())).read_paths()


def is_read(key: str, paths: set[tuple[str, ...]]) -> bool:
    parts = key.split(".")
    return any(len(path) == len(parts) and all(re.fullmatch(p, k) for p, k in zip(path, parts))
               for path in paths)


# Keys the config code itself applies when it builds the tree (config/ is not scanned, because
# its validation names every key), with the reading that applies them.
APPLIED_BY_CONFIG = {"DATA_DIR": "cfg.DATA_DIR"}


def test_every_config_key_is_read(repo_root):
    paths = read_keys(repo_root)
    config_code = (repo_root / "lib" / "hrpose" / "config" / "update.py").read_text()
    for reading in APPLIED_BY_CONFIG.values():
        assert reading in config_code
    unread = sorted(key for key in all_keys()
                    if not is_read(key, paths) and key not in APPLIED_BY_CONFIG)
    assert not unread, f"config keys that no code reads: {unread}"


def test_a_key_read_only_under_another_section_is_unread(repo_root):
    # TRAIN.SHUFFLE and RESCORE.LR are read; TEST.SHUFFLE and RESCORE.SIGMA name a last part
    # that is read elsewhere (TRAIN.SHUFFLE, DATASET.SIGMA) but are in no section that has them.
    paths = read_keys(repo_root)
    assert is_read("TRAIN.SHUFFLE", paths) and is_read("DATASET.SIGMA", paths)
    assert not is_read("TEST.SHUFFLE", paths)
    assert not is_read("RESCORE.SIGMA", paths)
