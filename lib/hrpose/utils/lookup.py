"""Looking a configured name up in a table, with one error line that lists the choices."""

from __future__ import annotations

from typing import Mapping, TypeVar

Value = TypeVar("Value")


def lookup(table: Mapping[str, Value], name: str, unknown: str,
           error: type[Exception] = ValueError) -> Value:
    """table[name]; for a missing name, error(unknown with {!r} filled by the name, followed by
    '; expected one of ' and the table's names, sorted)."""
    try:
        return table[name]
    except KeyError:
        choices = ", ".join(repr(choice) for choice in sorted(table))
        raise error(f"{unknown.format(name)}; expected one of {choices}") from None
