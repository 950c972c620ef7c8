"""Timing candidates against each other in turns, for the benchmarks on a shared machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_in_turns(functions: dict[str, Callable[[], object]], rounds: int,
                  pause_seconds: float = 0.0) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Calls every function once per round, in an order that rotates from round to round, so
    that load from other processes falls on all of them alike; returns each one's wall seconds
    per round and its last result.

    pause_seconds passes before each call: some runtimes' threads spin for a while after a run,
    which would slow the function called next.
    """
    seconds = {name: [] for name in functions}
    results: dict[str, object] = {}
    names = list(functions)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(pause_seconds)
            started = time.perf_counter()
            results[name] = functions[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds, results
