"""Linear-assignment solvers for tag grouping: munkres 1.1.4's tie-breaking, or scipy's.

The grouping cost round(tag distance) * 100 - detection value has many exactly equal
alternatives, and which optimum a solver returns decides which person a joint joins. The
reference (HigherHRNet's match_by_tag) calls the pure-Python ``munkres`` package (1.1.4, the
last release of that project); ``munkres_assignment`` follows its algorithm step by step, so it
returns the same assignment among equal-cost ones, with the per-step scans done by NumPy.
``linear_sum_assignment`` (scipy) finds an optimum of the same cost and is faster, but breaks
ties its own way. ``ASSIGNMENT_SOLVERS`` maps TEST.ASSIGNMENT_SOLVER names to the solvers.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

AssignmentSolver = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

# munkres starts its search for the smallest uncovered value from sys.maxsize, so a smaller
# value is never found above it.
_SMALLEST_START = float(sys.maxsize)


class _MunkresState:
    """The working matrix, stars, primes and covered lines of one munkres run on a square matrix."""

    def __init__(self, matrix: np.ndarray) -> None:
        size = matrix.shape[0]
        self.matrix = matrix
        self.zero = matrix == 0
        self.starred = np.zeros((size, size), dtype=bool)
        self.primed = np.zeros((size, size), dtype=bool)
        self.row_covered = np.zeros(size, dtype=bool)
        self.column_covered = np.zeros(size, dtype=bool)

    def clear_covers(self) -> None:
        self.row_covered[:] = False
        self.column_covered[:] = False

    def star_first_zeros(self) -> None:
        """Step 2: row by row, star the first zero whose column has no star yet."""
        for row in range(self.matrix.shape[0]):
            free = np.flatnonzero(self.zero[row] & ~self.column_covered)
            if free.size:
                self.starred[row, free[0]] = True
                self.column_covered[free[0]] = True
        self.clear_covers()

    def cover_starred_columns(self) -> bool:
        """Step 3: cover the columns with a star; True when every column is covered (done)."""
        self.column_covered = self.starred.any(axis=0)
        return bool(self.column_covered.all())

    def find_uncovered_zero(self, start_row: int, start_column: int) -> tuple[int, int]:
        """munkres' __find_a_zero: rows are scanned cyclically from start_row and the first row
        with an uncovered zero wins; its columns are scanned cyclically from start_column and,
        since that scan does not stop at a hit, the LAST zero of the cycle is returned.
        (-1, -1) when there is none."""
        uncovered = self.zero & ~self.row_covered[:, None] & ~self.column_covered[None, :]
        rows = np.flatnonzero(uncovered.any(axis=1))
        if rows.size == 0:
            return -1, -1
        later = rows[rows >= start_row]
        row = int(later[0] if later.size else rows[0])
        columns = np.flatnonzero(uncovered[row])
        wrapped = columns[columns < start_column]
        return row, int(wrapped[-1] if wrapped.size else columns[-1])

    def prime_zeros(self) -> tuple[int, int] | None:
        """Step 4: prime uncovered zeros until one has no star in its row (returned, for
        step 5); None when no uncovered zero is left (step 6)."""
        row, column = 0, 0
        while True:
            row, column = self.find_uncovered_zero(row, column)
            if row < 0:
                return None
            self.primed[row, column] = True
            star = np.flatnonzero(self.starred[row])
            if star.size == 0:
                return row, column
            column = int(star[0])
            self.row_covered[row] = True
            self.column_covered[column] = False

    def augment(self, row: int, column: int) -> None:
        """Step 5: flip stars and primes along the alternating path from the primed zero (row,
        column), then erase primes and uncover every line."""
        path = [(row, column)]
        while True:
            star_rows = np.flatnonzero(self.starred[:, path[-1][1]])
            if star_rows.size == 0:
                break
            star_row = int(star_rows[0])
            path.append((star_row, path[-1][1]))
            path.append((star_row, int(np.flatnonzero(self.primed[star_row])[0])))
        for path_row, path_column in path:
            self.starred[path_row, path_column] = not self.starred[path_row, path_column]
        self.primed[:] = False
        self.clear_covers()

    def shift_by_smallest_uncovered(self) -> None:
        """Step 6: add the smallest uncovered value to the covered rows, then subtract it from
        the uncovered columns (in that order, as munkres, so the float results are the same)."""
        uncovered = self.matrix[~self.row_covered][:, ~self.column_covered]
        smallest = min(float(uncovered.min()), _SMALLEST_START) if uncovered.size \
            else _SMALLEST_START
        self.matrix[self.row_covered] += smallest
        self.matrix[:, ~self.column_covered] -= smallest
        self.zero = self.matrix == 0


def munkres_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of an (n, m) cost matrix, chosen among equal-cost ones exactly
    as ``munkres.Munkres().compute`` (version 1.1.4) chooses it.

    As munkres, the matrix is padded with zeros to a square, its rows are reduced by their
    minimum (no column reduction), and the six steps of the Munkres algorithm run in its order,
    with its scanning orders (see _MunkresState). Returns (rows, columns) int64 arrays of the
    pairs inside the unpadded matrix, rows ascending, as scipy's linear_sum_assignment. Costs
    must be finite (munkres does not terminate or fails on others).
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"the cost matrix must be 2-D, got shape {cost.shape}")
    num_rows, num_columns = cost.shape
    if cost.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.isfinite(cost).all():
        raise ValueError("the cost matrix contains infinite or NaN entries")
    size = max(num_rows, num_columns)
    matrix = np.zeros((size, size))
    matrix[:num_rows, :num_columns] = cost
    matrix -= matrix.min(axis=1, keepdims=True)
    state = _MunkresState(matrix)
    state.star_first_zeros()
    while not state.cover_starred_columns():
        primed = state.prime_zeros()
        while primed is None:
            state.shift_by_smallest_uncovered()
            primed = state.prime_zeros()
        state.augment(*primed)
    rows, columns = np.nonzero(state.starred[:num_rows, :num_columns])
    return rows.astype(np.int64), columns.astype(np.int64)


# TEST.ASSIGNMENT_SOLVER -> solver.
ASSIGNMENT_SOLVERS: dict[str, AssignmentSolver] = {
    "munkres": munkres_assignment,
    "scipy": linear_sum_assignment,
}


def get_assignment_solver(name: str) -> AssignmentSolver:
    """The solver TEST.ASSIGNMENT_SOLVER names."""
    try:
        return ASSIGNMENT_SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown assignment solver {name!r}; expected one of "
                         f"{sorted(ASSIGNMENT_SOLVERS)}") from None
