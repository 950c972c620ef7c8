"""Modules stay small: one over 500 lines says at its top why it is one file."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "hrpose"
LIMIT = 500
REASON = "over 500 lines on purpose"


def long_modules_without_reason(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if REASON not in " ".join(docstring.split()):
            found.append(f"{path.relative_to(root)} ({text.count(chr(10))} lines)")
    return found


def test_every_long_module_gives_its_reason():
    assert long_modules_without_reason(PACKAGE) == []


def test_a_long_module_without_a_reason_is_found(tmp_path):
    (tmp_path / "long.py").write_text('"""A module."""\n' + "x = 1\n" * (LIMIT + 1))
    (tmp_path / "reasoned.py").write_text(f'"""A module.\n\nOne file {REASON}."""\n'
                                          + "x = 1\n" * (LIMIT + 1))
    (tmp_path / "short.py").write_text('"""A module."""\n')
    assert long_modules_without_reason(tmp_path) == [f"long.py ({LIMIT + 2} lines)"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_module_has_a_docstring(path):
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), path
