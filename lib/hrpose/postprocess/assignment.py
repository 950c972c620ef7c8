"""Linear-assignment solvers for tag grouping: munkres 1.1.4's tie-breaking, or scipy's.

The grouping cost round(tag distance) * 100 - detection value has many exactly equal
alternatives, and which optimum a solver returns decides which person a joint joins. The
reference (HigherHRNet's match_by_tag) calls the pure-Python ``munkres`` package (1.1.4, the
last release of that project); ``munkres_assignment`` follows its algorithm step by step, so it
returns the same assignment among equal-cost ones (its zero searches run on bit masks, its
matrix updates in NumPy, with the same float operations).
``linear_sum_assignment`` (scipy) finds an optimum of the same cost and is faster, but breaks
ties its own way. ``ASSIGNMENT_SOLVERS`` maps TEST.ASSIGNMENT_SOLVER names to the solvers.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..utils.lookup import lookup

AssignmentSolver = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

# munkres starts its search for the smallest uncovered value from sys.maxsize, so a smaller
# value is never found above it.
_SMALLEST_START = float(sys.maxsize)


# Up to this many rows or columns, bit masks fit an int64 and are converted by NumPy.
_INT64_BITS = 62


class _BitMasks:
    """Conversions between boolean arrays of one size and int bit masks (bit j: index j)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.small = size <= _INT64_BITS
        if self.small:
            self.index = np.arange(size, dtype=np.int64)
            self.weights = np.left_shift(1, self.index)

    def rows(self, mask: np.ndarray) -> list[int]:
        """Each row of a boolean (n, size) matrix as a bit mask."""
        if self.small:
            return (mask @ self.weights).tolist()
        packed = np.packbits(mask, axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def array(self, mask: int) -> np.ndarray:
        """A bit mask as a boolean array."""
        if self.small:
            return ((mask >> self.index) & 1).astype(bool)
        return np.array([(mask >> index) & 1 for index in range(self.size)], dtype=bool)


class _MunkresState:
    """The working matrix, stars, primes and covered lines of one munkres run on a square matrix.

    A row holds at most one star and one prime, a column at most one star, so they are kept as
    index lists (-1: none). munkres' inner loop is the search for an uncovered zero; for it the
    zeros of each row and the covered rows and columns are kept as bit masks (bit j: column or
    row j), so that a search is a scan over at most n integers.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        size = matrix.shape[0]
        self.size = size
        self.matrix = matrix
        self.star_column = [-1] * size    # per row
        self.star_row = [-1] * size    # per column
        self.prime_column = [-1] * size    # per row
        self.covered_rows = 0
        self.covered_columns = 0
        self.masks = _BitMasks(size)
        self.zero_bits = self.masks.rows(matrix == 0)

    def star(self, row: int, column: int) -> None:
        self.star_column[row] = column
        self.star_row[column] = row

    def star_first_zeros(self) -> None:
        """Step 2: row by row, star the first zero whose column has no star yet."""
        taken = 0
        for row, bits in enumerate(self.zero_bits):
            free = bits & ~taken
            if free:
                column = (free & -free).bit_length() - 1
                self.star(row, column)
                taken |= 1 << column

    def cover_starred_columns(self) -> bool:
        """Step 3 (after steps 2 and 5, which leave no line covered): cover the columns with a
        star; True when every column is covered (done)."""
        self.covered_rows = 0
        self.covered_columns = 0
        for column, row in enumerate(self.star_row):
            if row >= 0:
                self.covered_columns |= 1 << column
        return self.covered_columns == (1 << self.size) - 1

    def find_open_zero(self, start_row: int, start_column: int) -> tuple[int, int]:
        """munkres' __find_a_zero: rows are scanned cyclically from start_row and the first row
        with an uncovered zero wins; its columns are scanned cyclically from start_column and,
        since that scan does not stop at a hit, the LAST zero of the cycle is returned.
        (-1, -1) when there is none."""
        uncovered = ~self.covered_columns
        for row in (*range(start_row, self.size), *range(start_row)):
            if (self.covered_rows >> row) & 1:
                continue
            bits = self.zero_bits[row] & uncovered
            if bits:
                wrapped = bits & ((1 << start_column) - 1)
                return row, (wrapped or bits).bit_length() - 1
        return -1, -1

    def prime_zeros(self) -> tuple[int, int] | None:
        """Step 4: prime uncovered zeros until one has no star in its row (returned, for
        step 5); None when no uncovered zero is left (step 6)."""
        row, column = 0, 0
        while True:
            row, column = self.find_open_zero(row, column)
            if row < 0:
                return None
            self.prime_column[row] = column
            star = self.star_column[row]
            if star < 0:
                return row, column
            column = star
            self.covered_rows |= 1 << row
            self.covered_columns &= ~(1 << column)

    def augment(self, row: int, column: int) -> None:
        """Step 5: along the alternating path from the primed zero (row, column) (its column's
        star, that star's row's prime, ...), stars become unstarred and primes starred; then
        primes are erased (covers are reset by step 3)."""
        primes = [(row, column)]
        while self.star_row[primes[-1][1]] >= 0:
            star_row = self.star_row[primes[-1][1]]
            primes.append((star_row, self.prime_column[star_row]))
        for prime_row, prime_column in primes:
            self.star(prime_row, prime_column)
        self.prime_column = [-1] * self.size

    def shift_by_smallest_uncovered(self) -> None:
        """Step 6: add the smallest uncovered value to the covered rows, then subtract it from
        the uncovered columns (in that order, as munkres, so the float results are the same)."""
        rows = self.masks.array(self.covered_rows)
        open_columns = ~self.masks.array(self.covered_columns)
        uncovered = self.matrix[~rows][:, open_columns]
        smallest = min(float(uncovered.min()), _SMALLEST_START) if uncovered.size \
            else _SMALLEST_START
        self.matrix[rows] += smallest
        self.matrix[:, open_columns] -= smallest
        self.zero_bits = self.masks.rows(self.matrix == 0)


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
    columns = np.array(state.star_column[:num_rows], dtype=np.int64)
    rows = np.flatnonzero(columns < num_columns)
    return rows.astype(np.int64), columns[rows].astype(np.int64)


# TEST.ASSIGNMENT_SOLVER -> solver.
ASSIGNMENT_SOLVERS: dict[str, AssignmentSolver] = {
    "munkres": munkres_assignment,
    "scipy": linear_sum_assignment,
}


def get_assignment_solver(name: str) -> AssignmentSolver:
    """The solver TEST.ASSIGNMENT_SOLVER names."""
    return lookup(ASSIGNMENT_SOLVERS, name, "unknown assignment solver {!r}")
