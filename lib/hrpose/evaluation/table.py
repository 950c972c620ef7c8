"""The markdown results table the original code writes to its log after every evaluation."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

# Arch names longer than this are cut to their first 8 characters plus "...", as originally.
MAX_ARCH_NAME_LENGTH = 15
TRUNCATED_ARCH_PREFIX_LENGTH = 8


def short_arch_name(full_arch_name: str) -> str:
    """The arch cell's text: the name itself, or its first 8 characters + '...' past 15."""
    if len(full_arch_name) > MAX_ARCH_NAME_LENGTH:
        return full_arch_name[:TRUNCATED_ARCH_PREFIX_LENGTH] + "..."
    return full_arch_name


def _as_row_list(name_value: Mapping[str, float] | Sequence[Mapping[str, float]]
                 ) -> list[Mapping[str, float]]:
    """One mapping or a sequence of them -> a non-empty list whose rows share the same names."""
    rows = [name_value] if isinstance(name_value, Mapping) else list(name_value)
    if not rows:
        raise ValueError("a results table needs at least one row of name/value pairs")
    names = list(rows[0])
    for row in rows[1:]:
        if list(row) != names:
            raise ValueError(f"every row of a results table needs the metrics {names}, "
                             f"in that order; got {list(row)}")
    return rows


def format_name_value_table(name_value: Mapping[str, float] | Sequence[Mapping[str, float]],
                            full_arch_name: str) -> list[str]:
    """Lines of the table: header, separator, then one row per mapping (values to 3 decimals).

    For one mapping these are exactly the three lines the original _print_name_value logs,
    e.g. '| Arch | AP | Ap .5 |', '|---|---|---|', '| pose_hrnet | 0.751 | 0.900 |'.
    """
    rows = _as_row_list(name_value)
    names = list(rows[0])
    header = "| Arch " + "".join(f"| {name} " for name in names) + "|"
    separator = "|---" * (len(names) + 1) + "|"
    arch = short_arch_name(full_arch_name)
    body = ["| " + arch + " " + "".join(f"| {value:.3f} " for value in row.values()) + "|"
            for row in rows]
    return [header, separator, *body]


def log_name_value_table(logger: logging.Logger,
                         name_value: Mapping[str, float] | Sequence[Mapping[str, float]],
                         full_arch_name: str) -> None:
    """Log each line of ``format_name_value_table`` at INFO on the given logger."""
    for line in format_name_value_table(name_value, full_arch_name):
        logger.info("%s", line)
