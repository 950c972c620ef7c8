"""Decoding of heatmap-guided keypoint regression (2020 paper): offsets to poses, pose NMS, scores.

The test-time pipeline of "Bottom-Up Human Pose Estimation by Ranking Heatmap-Guided Adaptive
Keypoint Estimates" (docs/regression.md, decoding) for one image:

1. per test scale (largest first; sizes as ``bottomup.get_multi_scale_size`` with min scale 1):
   forward; each stage's heatmap branches merged by an element-wise maximum; stages brought to
   the last stage's size with ``up_interpolate`` and averaged (the centre channel comes from the
   stages that have one); keypoint maps = pixel grid - offsets. With flip, the mirrored input is
   shifted left by stride - 1 pixels (3 for the 1/4 outputs, 1 for the 1/2 one; one forward pass
   per shift) so that output pixel j of the flipped pass lands on output pixel j of the normal
   pass; its maps are mirrored back and re-indexed. Heatmaps and keypoint maps are averaged with
   the flipped ones; keypoint maps are resized (nearest) to the heatmap size, in its pixels;
2. ``candidate_poses``: on each scale's centre map, normalised to the scale-1 maximum (other
   scales times SCALE_DECREASE), max-pool NMS with a 3/5/7 kernel by map size, the top
   MAX_NUM_PEOPLE peaks above KEYPOINT_THRESHOLD; the pose is the keypoint map at the peak in
   base pixels (the input size at scale 1);
3. ``pose_nms`` drops poses with more than OVERLAP_THRESHOLD joints within DIST_THRESHOLD pixels
   of a higher-scoring one; at most MAX_NUM_PEOPLE are kept;
4. the "regression" result scores each joint by centre score x the bilinear heat value of the
   scale-fused heatmap; the "final" result snaps joints to heatmap peaks (``absorb_heat``), then
   refines them with a Gaussian fit (``gaussian_fit_adjust``); person score = mean joint score;
5. back-projection with ``bottomup.get_final_preds``; optionally a rescore net (``rescore``).

``infer_regression`` runs it all and mirrors ``bottomup.infer_bottom_up``. Defaults reproduce the
reference, defects included; the ``fix_*`` fields and ``gaussian_fit`` 'corrected' switch fixes
on. The Gaussian fit of the reference is scipy's curve_fit per joint on a grid that is transposed
for non-square windows, with joints off the map fitted through negative-index wrap-around
(``reference_gaussian_fit_adjust``, the default); the corrected one is a batched
Levenberg-Marquardt in NumPy with correct window coordinates (``fit_gaussian_windows``,
``corrected_gaussian_fit_adjust``).

Modules: ``params`` (settings and the results passed on), ``maps`` (step 1), ``candidates``
(steps 2 and 3), ``gaussian_fit`` (both fits), ``decoder`` (joint scores, steps 4 and 5); this
package re-exports their public names.
"""

from __future__ import annotations

from .candidates import (
    POOL_KERNELS,
    candidate_poses,
    center_peaks,
    pool_kernel,
    pose_nms,
    strongest,
)
from .decoder import (
    ABSORB_NMS_KERNEL,
    Rescorer,
    absorb_heat,
    decode_regression,
    heat_values,
    infer_regression,
)
from .gaussian_fit import (
    FIT_DAMPING_FACTOR,
    FIT_FAILURES,
    FIT_INITIAL_DAMPING,
    FIT_MAX_DAMPING,
    FIT_MAX_ITERATIONS,
    FIT_TOLERANCE,
    REFERENCE_FIT_MAX_EVALUATIONS,
    corrected_gaussian_fit_adjust,
    fit_gaussian_windows,
    gaussian_fit_adjust,
    reference_fit_samples,
    reference_gaussian_fit_adjust,
)
from .maps import (
    REFERENCE_MIN_SCALE,
    flipped_input,
    merge_branches,
    offsets_to_keypoints,
    regression_multi_scale_maps,
    scale_maps,
    stage_heatmaps,
    unflip_heatmaps,
    unflip_keypoint_maps,
    up_interpolate,
)
from .params import (
    GAUSSIAN_FITS,
    DecodedPoses,
    RegressionMaps,
    RegressionPrediction,
    RegressionTestParams,
)

__all__ = [
    "ABSORB_NMS_KERNEL", "FIT_DAMPING_FACTOR", "FIT_FAILURES", "FIT_INITIAL_DAMPING",
    "FIT_MAX_DAMPING", "FIT_MAX_ITERATIONS", "FIT_TOLERANCE", "GAUSSIAN_FITS", "POOL_KERNELS",
    "REFERENCE_FIT_MAX_EVALUATIONS", "REFERENCE_MIN_SCALE", "DecodedPoses", "RegressionMaps",
    "RegressionPrediction", "RegressionTestParams", "Rescorer", "absorb_heat", "candidate_poses",
    "center_peaks", "corrected_gaussian_fit_adjust", "decode_regression", "fit_gaussian_windows",
    "flipped_input", "gaussian_fit_adjust", "heat_values", "infer_regression", "merge_branches",
    "offsets_to_keypoints", "pool_kernel", "pose_nms", "reference_fit_samples",
    "reference_gaussian_fit_adjust", "regression_multi_scale_maps", "scale_maps", "stage_heatmaps",
    "strongest", "unflip_heatmaps", "unflip_keypoint_maps", "up_interpolate",
]
