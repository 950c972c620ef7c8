"""File input and output: JSON files read with clear errors, and atomic writes of any file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)

# Temporary files of atomic writes: '.<target name>.<pid>-<8 hex digits>.tmp' beside the target,
# plus the target's extension for writers that choose the format by it ('.tmp.mp4').
_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.\w+)?$")
# What checkpoint writes left behind before the helper above existed ('.tmp-XXXXXXXX.pth').
_LEGACY_CHECKPOINT_TEMPORARY = re.compile(r"^\.tmp-[A-Za-z0-9_]{8}\.pth$")


def read_json(path: str | os.PathLike, description: str, hint: str = "") -> Any:
    """Load a JSON file; a missing or malformed file raises a DataError naming it (plus hint)."""
    suffix = f" ({hint})" if hint else ""
    if not os.path.isfile(path):
        raise DataFileNotFoundError(f"{description} file not found: '{path}'{suffix}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{description} file '{path}' is not valid JSON: {error}") from None


def temporary_sibling(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """A new, unique temporary name beside path (same folder, so os.replace is atomic); with
    keep_suffix it ends in path's extension too."""
    target = Path(path)
    suffix = target.suffix if keep_suffix else ""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some file systems cannot open a folder, which is harmless.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _fsync_file(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; once the block
    finishes it is synced to disk and renamed over ``path``, and on an exception it is removed.
    keep_suffix gives it path's extension, for writers that pick the format by it (OpenCV).

    Readers never see a half-written file and a crash leaves the previous version in place. The
    file gets the permissions of any new file under the user's umask (mkstemp would give 0600,
    which teammates on shared storage cannot read). Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(target, keep_suffix)
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Yield an open file (text 'w' in UTF-8, or binary 'wb') that replaces ``path`` only if the
    block finishes without an exception; see atomic_path."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    with atomic_path(path) as temporary:
        # O_EXCL: the unique name is never someone else's file; 0o666 leaves the rest to the umask.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file


def process_is_running(pid: int) -> bool:
    """Whether a process with this id is alive (this user's or another's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files of atomic writes in folder whose writing process no longer runs (a
    killed run left them), plus the older checkpoint temporaries '.tmp-XXXXXXXX.pth'."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = []
    for entry in sorted(root.iterdir()):
        if not entry.is_file() or entry.is_symlink():
            continue
        match = _TEMPORARY_NAME.match(entry.name)
        if match and not process_is_running(int(match["pid"])):
            stale.append(entry)
        elif _LEGACY_CHECKPOINT_TEMPORARY.match(entry.name):
            stale.append(entry)
    return stale


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete stale_temporaries(folder), logging each; returns what was removed."""
    removed = []
    for path in stale_temporaries(folder):
        size = path.stat().st_size
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            logger.info("removed %s (%d bytes), a temporary file an interrupted write left",
                        path, size)
    return removed
