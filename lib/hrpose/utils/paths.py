"""Output paths checked before a tool works: errors that name the path and what is in its way."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HrposeError


class OutputPathError(HrposeError, ValueError):
    """An output file or folder that cannot be written where the user asked for it."""


def blocking_file(path: str | os.PathLike) -> str | None:
    """The nearest existing entry of path (path itself, else its closest existing parent) when it
    is not a folder, so that no folder can be created there; None when nothing is in the way."""
    for candidate in (Path(path), *Path(path).parents):
        if os.path.exists(candidate):
            return None if os.path.isdir(candidate) else str(candidate)
    return None


def is_same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether a and b name the same place (relative or absolute)."""
    return os.path.abspath(a) == os.path.abspath(b)


def check_output_folder(path: str | os.PathLike, what: str) -> None:
    """Raise OutputPathError when the folder path (what: e.g. "--output-dir") is a file or lies
    under one; a folder that does not exist yet is fine (the tool creates it)."""
    blocker = blocking_file(path)
    if blocker is None:
        return
    if is_same_path(blocker, path):
        raise OutputPathError(f"{what} '{path}' is a file, expected a folder")
    raise OutputPathError(f"{what} '{path}' cannot be created: '{blocker}' is a file, "
                          f"not a folder")


def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Raise OutputPathError when the file path (what: e.g. "--output") is a folder, or its
    folder cannot be created because a file is in the way."""
    if os.path.isdir(path):
        raise OutputPathError(f"{what} '{path}' is a folder, expected the name of a file to "
                              f"write")
    blocker = blocking_file(Path(path).parent)
    if blocker is not None:
        raise OutputPathError(f"{what} '{path}' cannot be written: '{blocker}' is a file, "
                              f"not a folder")
