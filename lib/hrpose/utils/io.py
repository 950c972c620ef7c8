"""Reading JSON files with errors that name the file and say what it should hold."""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import DataError, DataFileNotFoundError


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
