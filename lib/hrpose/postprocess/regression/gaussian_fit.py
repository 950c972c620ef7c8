"""Gaussian-fit refinement of joints: the reference's per-joint curve_fit and the batched fit."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from .params import RegressionTestParams

# Gaussian fit: iteration budget and relative tolerances (MINPACK's default ftol = xtol).
FIT_MAX_ITERATIONS = 100
FIT_TOLERANCE = 1.49012e-8
# Levenberg-Marquardt damping: start, factor per accepted / rejected step, give-up level.
FIT_INITIAL_DAMPING = 1e-3
FIT_DAMPING_FACTOR = 10.0
FIT_MAX_DAMPING = 1e10
# The reference's curve_fit budget (function evaluations).
REFERENCE_FIT_MAX_EVALUATIONS = 300
# What curve_fit raises when a fit fails (no convergence, fewer pixels than parameters, ...);
# the reference then leaves the joint as it is.
FIT_FAILURES = (RuntimeError, ValueError, TypeError, np.linalg.LinAlgError)


def fit_gaussian_windows(windows: np.ndarray, valid: np.ndarray, initial: np.ndarray,
                         max_iterations: int = FIT_MAX_ITERATIONS,
                         tolerance: float = FIT_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fits of A exp(-((c - x0)^2 + (r - y0)^2) / (2 s^2)), many at once.

    windows (B, h, w) heatmap values, valid (B, h, w) the pixels that take part (a window cut by
    the map border is padded and masked), initial (B, 4) starting (A, y0, x0, s) with y0 the row
    and x0 the column in window pixels. Returns the parameters (B, 4) float64 and whether each
    fit converged (B,).

    The same model, objective (sum of squared residuals over the valid pixels) and starting
    point as the reference's scipy curve_fit, solved by a batched Levenberg-Marquardt with the
    analytic Jacobian and multiplicative damping (x0.1 after a step that lowers the cost, x10
    after one that does not). A fit has converged when an accepted step lowers the cost by at
    most ``tolerance`` relatively, moves the parameters by at most ``tolerance`` relatively, the
    cost is zero, or no step lowers the cost any more (the damping passed 1e10); it has failed
    when none of that happened within max_iterations or a parameter is not finite. curve_fit
    (MINPACK lmdif) differs in its finite-difference Jacobian, trust-region scaling and budget
    (300 function evaluations): on a well-posed peak both reach the same minimum (to ~1e-6
    pixels), on a flat or noisy window either may give up where the other returns a fit. The
    sign of s is irrelevant (only s^2 enters).
    """
    windows = np.asarray(windows, dtype=np.float64)
    batch, height, width = windows.shape
    if batch == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=bool)
    mask = np.asarray(valid, dtype=np.float64).reshape(batch, -1)
    data = windows.reshape(batch, -1) * mask
    rows = np.repeat(np.arange(height, dtype=np.float64), width)[None]
    columns = np.tile(np.arange(width, dtype=np.float64), height)[None]

    def residuals_and_jacobian(theta: np.ndarray, with_jacobian: bool,
                               subset: np.ndarray | slice = slice(None)):
        mask_part, data_part = mask[subset], data[subset]
        amplitude, row0, column0, sigma = (theta[:, k:k + 1] for k in range(4))
        d_row, d_column = rows - row0, columns - column0
        squared = d_row ** 2 + d_column ** 2
        sigma2 = sigma ** 2
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            gauss = np.exp(-squared / (2 * sigma2))
            residual = (amplitude * gauss) * mask_part - data_part
            if not with_jacobian:
                return residual, None
            scaled = amplitude * gauss * mask_part
            jacobian = np.stack([gauss * mask_part, scaled * d_row / sigma2,
                                 scaled * d_column / sigma2, scaled * squared / (sigma2 * sigma)],
                                axis=2)
        return residual, jacobian

    theta = np.asarray(initial, dtype=np.float64).reshape(batch, 4).copy()
    damping = np.full(batch, FIT_INITIAL_DAMPING)
    done = np.zeros(batch, dtype=bool)
    failed = np.zeros(batch, dtype=bool)
    residual, jacobian = residuals_and_jacobian(theta, True)
    cost = (residual ** 2).sum(axis=1)
    done |= cost == 0
    for _ in range(max_iterations):
        active = ~done & np.isfinite(cost)
        if not active.any():
            break
        gradient = np.einsum("bmk,bm->bk", jacobian, residual)
        normal = np.einsum("bmk,bml->bkl", jacobian, jacobian)
        diagonal = np.diagonal(normal, axis1=1, axis2=2)
        floor = np.maximum(diagonal.max(axis=1, keepdims=True) * 1e-12, 1e-300)
        system = normal + (damping[:, None] * np.maximum(diagonal, floor))[:, :, None] \
            * np.eye(4)[None]
        good = active & np.all(np.isfinite(system), axis=(1, 2)) \
            & np.all(np.isfinite(gradient), axis=1)
        step = np.zeros_like(theta)
        if good.any():
            step[good] = np.linalg.solve(system[good], -gradient[good][..., None])[..., 0]
        trial = theta + step
        trial_residual, _ = residuals_and_jacobian(trial, False)
        trial_cost = (trial_residual ** 2).sum(axis=1)
        improved = good & np.isfinite(trial_cost) & (trial_cost < cost)
        relative_drop = (cost - trial_cost) / np.maximum(cost, 1e-300)
        small_step = np.linalg.norm(step, axis=1) <= tolerance * (
            np.linalg.norm(theta, axis=1) + tolerance)
        converged = improved & ((relative_drop <= tolerance) | small_step | (trial_cost == 0))
        theta = np.where(improved[:, None], trial, theta)
        damping = np.where(improved, damping / FIT_DAMPING_FACTOR, damping * FIT_DAMPING_FACTOR)
        stalled = active & ~improved & (damping > FIT_MAX_DAMPING)
        failed |= active & ~good
        done |= converged | stalled | failed
        if improved.any():
            new_residual, new_jacobian = residuals_and_jacobian(theta[improved], True, improved)
            residual[improved], jacobian[improved] = new_residual, new_jacobian
            cost[improved] = trial_cost[improved]
    converged = done & ~failed & np.all(np.isfinite(theta), axis=1) & np.isfinite(cost)
    return theta, converged


def gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray, center_scores: np.ndarray,
                        params: RegressionTestParams) -> np.ndarray:
    """Refine joints by a Gaussian fit on the heatmaps (the fit params.gaussian_fit names);
    returns new poses (P, J, 3) float32. Arguments as corrected_gaussian_fit_adjust."""
    if params.gaussian_fit == "reference":
        return reference_gaussian_fit_adjust(poses, heatmaps, center_scores, params)
    return corrected_gaussian_fit_adjust(poses, heatmaps, center_scores, params)


def _gaussian_surface(samples: np.ndarray, amplitude: float, first_center: float,
                      second_center: float, sigma: float) -> np.ndarray:
    """A exp(-((a - a0)^2 + (b - b0)^2) / (2 s^2)) at samples (2, n) of coordinates (a, b)."""
    first, second = samples
    return amplitude * np.exp(-((second - second_center) ** 2 + (first - first_center) ** 2)
                              / (2 * sigma ** 2))


def reference_fit_samples(window_shape: tuple[int, int]) -> np.ndarray:
    """The reference's sample coordinates (2, h * w) for a window's row-major pixels.

    It pairs pixel k with (k // h, k % h) (a grid built for (w, h) and flattened against an
    (h, w) window): the true (row, column) = (k // w, k % w) only when the window is square.
    """
    height, width = window_shape
    return np.stack(np.divmod(np.arange(height * width, dtype=np.float64), height))


def _reference_fit(window: np.ndarray, start: tuple[float, float, float, float]
                   ) -> np.ndarray | None:
    """curve_fit of the reference's model on one window; (A, row, column, s) or None on failure."""
    samples = reference_fit_samples(window.shape)
    try:
        with warnings.catch_warnings():
            # curve_fit warns when it cannot estimate the covariance, which is not used.
            warnings.simplefilter("ignore", OptimizeWarning)
            fitted, _ = curve_fit(_gaussian_surface, samples, window.ravel(), p0=start,
                                  maxfev=REFERENCE_FIT_MAX_EVALUATIONS)
    except FIT_FAILURES:
        return None
    return fitted


def reference_gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray,
                                  center_scores: np.ndarray,
                                  params: RegressionTestParams) -> np.ndarray:
    """The reference's Gaussian fit, quirks included; returns new poses (P, J, 3) float32.

    poses (P, J, 3) (x, y, score) in the maps' pixels; heatmaps (J, H, W); center_scores (P,).
    For each joint with score > adjust_threshold: r = int(y + 0.5), c = int(x + 0.5) (in
    float64, truncated); joints with r in {0, H - 1} or c in {0, W - 1} are skipped, but joints
    off the map are not: Python indexing wraps negative r, c around (the starting amplitude is
    heatmap[r, c]) and a window slice whose end is negative wraps too; indices beyond the map
    fail and leave the joint. The window is heatmap[max(0, r - k):min(H - 1, r + k) + 1,
    max(0, c - k):min(W - 1, c + k) + 1] (k = gaussian_kernel), fitted by scipy's curve_fit
    (300 evaluations) on ``reference_fit_samples``' grid, transposed for windows that are not
    square; start: that amplitude, (r, c) in window pixels, s = gaussian_sigma. A fit moves the
    joint to the window origin + the fitted centre and scores it float32(A) x the centre score
    in float32 (the reference multiplies by a float32 tensor); a failed fit leaves it. Fits are
    cached per joint type and (r, c), as the reference's. Joints at non-finite positions (the
    reference would crash on them) are left.
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    center_scores = np.asarray(center_scores, dtype=np.float32)
    _, height, width = heatmaps.shape
    half = int(params.gaussian_kernel)
    # The reference's float32 scalars met Python floats, which NumPy then computed in float64.
    values = poses.astype(np.float64)
    finite = np.isfinite(values[..., 0]) & np.isfinite(values[..., 1])
    selected = finite & (values[..., 2] > params.adjust_threshold)
    rounded = np.where(finite[..., None], values[..., :2], 0.0) + 0.5
    columns = np.trunc(rounded[..., 0]).astype(np.int64)
    rows = np.trunc(rounded[..., 1]).astype(np.int64)
    fits: dict[tuple[int, int, int], np.ndarray | None] = {}
    for person, joint in zip(*np.nonzero(selected)):
        row, column = int(rows[person, joint]), int(columns[person, joint])
        if row in (0, height - 1) or column in (0, width - 1):
            continue
        key = (int(joint), row, column)
        if key not in fits:
            fits[key] = _reference_window_fit(heatmaps[joint], row, column, half,
                                              float(params.gaussian_sigma))
        fit = fits[key]
        if fit is None:
            continue
        top, left, amplitude, fitted_row, fitted_column = fit
        poses[person, joint, 0] = left + fitted_column
        poses[person, joint, 1] = top + fitted_row
        poses[person, joint, 2] = np.float32(amplitude) * center_scores[person]
    return poses


def _reference_window_fit(heatmap: np.ndarray, row: int, column: int, half: int,
                          sigma: float) -> np.ndarray | None:
    """(top, left, A, row, column) of the reference's fit around (row, column), or None."""
    height, width = heatmap.shape
    if not (-height <= row < height and -width <= column < width):
        return None    # the reference's heatmap[row][column] raises IndexError
    top, left = max(0, row - half), max(0, column - half)
    bottom, right = min(height - 1, row + half), min(width - 1, column + half)
    # Plain Python slices, so negative ends wrap around as in the reference.
    window = heatmap[top:bottom + 1, left:right + 1]
    start = (float(heatmap[row, column]), float(row - top), float(column - left), sigma)
    fitted = _reference_fit(window, start)
    if fitted is None:
        return None
    return np.array([top, left, fitted[0], fitted[1], fitted[2]])


def corrected_gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray,
                                  center_scores: np.ndarray,
                                  params: RegressionTestParams) -> np.ndarray:
    """Refine joints by a Gaussian fit on the heatmaps; returns new poses (P, J, 3) float32.

    poses (P, J, 3) (x, y, score) in the maps' pixels; heatmaps (J, H, W); center_scores (P,).
    Each joint with score > adjust_threshold whose rounded pixel (int(x + 0.5), int(y + 0.5))
    lies inside the map but not on its outermost rows or columns (the reference skips those)
    is fitted on the window of +-gaussian_kernel pixels around that pixel, cut at the map
    border, from A = the heatmap there, the pixel as centre and s = gaussian_sigma; a converged
    fit moves the joint to the fitted centre and sets its score to A x the person's centre
    score. Joints sharing a joint type and rounded pixel are fitted once (the reference's cache
    gives them the same result). Unlike the reference, whose window coordinates are transposed
    for windows that are not square (so fits next to the border are scrambled), every window is
    fitted in its own row and column coordinates.
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    if len(poses) == 0:
        return poses
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    num_joints, height, width = heatmaps.shape
    x, y = poses[..., 0].astype(np.float64), poses[..., 1].astype(np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    column = np.trunc(np.where(finite, x, -1) + 0.5).astype(np.int64)
    row = np.trunc(np.where(finite, y, -1) + 0.5).astype(np.int64)
    selected = (finite & (poses[..., 2] > params.adjust_threshold) & (row >= 1)
                & (row <= height - 2) & (column >= 1) & (column <= width - 2))
    person, joint = np.nonzero(selected)
    if person.size == 0:
        return poses
    keys = np.stack([joint, row[person, joint], column[person, joint]], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    fit_joint, fit_row, fit_column = unique.T
    half = int(params.gaussian_kernel)
    top, left = np.maximum(fit_row - half, 0), np.maximum(fit_column - half, 0)
    bottom, right = np.minimum(fit_row + half, height - 1), np.minimum(fit_column + half, width - 1)
    span = np.arange(2 * half + 1)
    window_rows, window_columns = top[:, None] + span, left[:, None] + span
    valid = (window_rows <= bottom[:, None])[:, :, None] \
        & (window_columns <= right[:, None])[:, None, :]
    windows = heatmaps[fit_joint[:, None, None], np.minimum(window_rows, height - 1)[:, :, None],
                       np.minimum(window_columns, width - 1)[:, None, :]]
    initial = np.stack([heatmaps[fit_joint, fit_row, fit_column].astype(np.float64),
                        (fit_row - top).astype(np.float64), (fit_column - left).astype(np.float64),
                        np.full(len(unique), float(params.gaussian_sigma))], axis=1)
    fitted, converged = fit_gaussian_windows(windows, valid, initial)
    ok = converged[inverse]
    person, joint, pair = person[ok], joint[ok], inverse[ok]
    poses[person, joint, 0] = left[pair] + fitted[pair, 2]
    poses[person, joint, 1] = top[pair] + fitted[pair, 1]
    poses[person, joint, 2] = fitted[pair, 0] * np.asarray(center_scores, dtype=np.float64)[person]
    return poses
