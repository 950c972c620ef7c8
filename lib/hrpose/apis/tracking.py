"""Video extras: person track ids by OKS matching, and One-Euro smoothing of keypoints per track.

    tracker = PoseTracker(get_keypoint_info("coco").sigmas_array)
    smoother = TrackSmoother(min_cutoff=1.0, beta=0.03)
    for timestamp, poses, boxes in frames:              # poses (N, J, 3), boxes (N, 4) xywh
        ids = tracker.update(poses, boxes)              # (N,) int track ids
        poses = smoother(ids, poses, timestamp)         # x, y filtered per track and joint
        smoother.retain(tracker.track_ids)              # forget the filters of dropped tracks

Tracking: each live track keeps the last pose matched to it. A frame's persons are matched to the
live tracks by object keypoint similarity (OKS, the COCO formula with the dataset's sigmas and
the person box area as the object area) with the Hungarian method
(scipy.optimize.linear_sum_assignment); a pair below the OKS threshold is never matched. An
unmatched person starts a new track with the next unused id; a track left unmatched in more than
``max_age`` consecutive frames is dropped (its id is never reused).

Smoothing: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is an exponential low-pass
filter whose cutoff frequency rises with the filtered speed of the signal,
``cutoff = min_cutoff + beta * |speed|``, so a still joint is smoothed strongly (little jitter)
and a moving one lightly (little lag). Time is in seconds, so cutoffs are in hertz; coordinates
are in pixels, so ``beta`` is in hertz per (pixel / second) and depends on the resolution. Every
coordinate has its own state and its own time of last update, so a joint that is not fed for a
while (a low score) keeps its state untouched and resumes where it left off.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..nms import oks_iou

__all__ = ["DEFAULT_BETA", "DEFAULT_D_CUTOFF", "DEFAULT_KEYPOINT_THRESHOLD", "DEFAULT_MAX_AGE",
           "DEFAULT_MIN_CUTOFF", "DEFAULT_OKS_THRESHOLD", "OneEuroFilter", "PoseTracker",
           "TrackSmoother", "match_by_oks", "one_euro_alpha", "oks_matrix", "pose_areas"]

# One-Euro defaults for keypoints in pixels and time in seconds: a still joint is low-passed
# at 1 Hz, which at the demo's 10 frames/s about halves the standard deviation of its jitter;
# a joint moving at 100 px/s (a slow arm swing in a 720p video) at 1 + 0.03 * 100 = 4 Hz,
# which lets it lag by about speed / (2 pi cutoff) = 4 px instead of 16 px.
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 0.03
# Cutoff of the speed estimate, 1 Hz as in the paper.
DEFAULT_D_CUTOFF = 1.0
# Joints scored below this are not fed to the smoother, and only joints scored above it count
# in the tracker's OKS (the demo draws the joints scored above 0.2).
DEFAULT_KEYPOINT_THRESHOLD = 0.2
# A pair of poses matches when their OKS reaches this.
DEFAULT_OKS_THRESHOLD = 0.3
# A track survives this many consecutive frames without a match (half a second at 10 fps).
DEFAULT_MAX_AGE = 5


def one_euro_alpha(cutoff, dt):
    """The smoothing factor of an exponential low-pass filter with the given cutoff frequency
    (Hz) sampled dt seconds after the previous sample: 1 / (1 + tau / dt), tau = 1 / (2 pi
    cutoff). Works elementwise on arrays."""
    rate = 2.0 * math.pi * np.asarray(cutoff, dtype=np.float64) * dt
    return rate / (1.0 + rate)


def _positive(value: float, name: str, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {bound} number, got {value!r}")
    return value


class OneEuroFilter:
    """One-Euro filter over an array of values of a fixed shape (e.g. (J, 2) joint coordinates),
    every element filtered independently.

    The speed is the low-passed difference of consecutive fed values over their time step (as in
    the authors' reference implementation), so on a ramp it converges to the ramp's slope v and
    the output lags by v / (2 pi (min_cutoff + beta |v|)).

    ``one_euro(values, timestamp, mask)`` returns the filtered values. Elements where mask is
    False (or the value is not finite) are returned unchanged and leave their state untouched.
    An element's first fed value is returned as is and starts its state; a later one is filtered
    with the time since that element was last fed. A timestamp that does not advance for an
    element carries no time: that element returns its last filtered value (the filter's limit as
    the time step goes to zero) and its state does not change.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        self.min_cutoff = _positive(min_cutoff, "min_cutoff")
        self.beta = _positive(beta, "beta", allow_zero=True)
        self.d_cutoff = _positive(d_cutoff, "d_cutoff")
        self.reset()

    def reset(self) -> None:
        """Forget every state: the next values are returned as they come."""
        self._value: np.ndarray | None = None   # filtered value
        self._raw: np.ndarray | None = None     # last value fed
        self._speed: np.ndarray | None = None   # filtered derivative, units per second
        self._time: np.ndarray | None = None    # when each element was last fed
        self._seen: np.ndarray | None = None    # whether each element has a state

    def __call__(self, values, timestamp: float, mask=None) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
        if self._value is None:
            self._value = np.zeros(values.shape)
            self._raw = np.zeros(values.shape)
            self._speed = np.zeros(values.shape)
            self._time = np.zeros(values.shape)
            self._seen = np.zeros(values.shape, dtype=bool)
        elif values.shape != self._value.shape:
            raise ValueError(f"the filter holds values of shape {self._value.shape}, got "
                             f"{values.shape}")
        fed = np.isfinite(values)
        if mask is not None:
            fed &= np.broadcast_to(np.asarray(mask, dtype=bool), values.shape)
        dt = timestamp - self._time
        first = fed & ~self._seen
        update = fed & self._seen & (dt > 0)
        still = fed & self._seen & (dt <= 0)
        out = values.copy()
        out[still] = self._value[still]

        step = dt[update]
        raw = values[update]
        previous = self._value[update]
        alpha_d = one_euro_alpha(self.d_cutoff, step)
        rate = (raw - self._raw[update]) / step
        speed = self._speed[update] + alpha_d * (rate - self._speed[update])
        alpha = one_euro_alpha(self.min_cutoff + self.beta * np.abs(speed), step)
        filtered = previous + alpha * (raw - previous)   # exact on a constant
        self._value[update] = filtered
        self._raw[update] = raw
        self._speed[update] = speed
        out[update] = filtered

        self._value[first] = values[first]
        self._raw[first] = values[first]
        self._speed[first] = 0.0
        self._seen |= first
        self._time[first | update] = timestamp
        return out


class TrackSmoother:
    """One OneEuroFilter per track id over the (x, y) of its joints; scores are left as they are.

    Joints scored below keypoint_threshold pass through unfiltered and do not change their
    filter's state. Call retain(live ids) to forget the filters of tracks that ended.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF,
                 keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD):
        OneEuroFilter(min_cutoff, beta, d_cutoff)   # check the settings once, here
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.keypoint_threshold = float(keypoint_threshold)
        self.filters: dict[int, OneEuroFilter] = {}

    def __call__(self, track_ids, poses, timestamp: float) -> np.ndarray:
        """Smoothed copies of poses (N, J, 3), the n-th belonging to track track_ids[n]."""
        poses = np.array(poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[2] != 3:
            raise ValueError(f"poses must have shape (N, J, 3), got {poses.shape}")
        track_ids = [int(i) for i in np.asarray(track_ids).reshape(-1)]
        if len(track_ids) != len(poses) or len(set(track_ids)) != len(track_ids):
            raise ValueError(f"expected {len(poses)} distinct track ids, got {track_ids}")
        for track_id, pose in zip(track_ids, poses):
            one_euro = self.filters.get(track_id)
            if one_euro is None:
                one_euro = self.filters[track_id] = OneEuroFilter(self.min_cutoff, self.beta,
                                                                  self.d_cutoff)
            confident = pose[:, 2:3] >= self.keypoint_threshold
            pose[:, :2] = one_euro(pose[:, :2], timestamp, confident)
        return poses

    def retain(self, track_ids) -> None:
        """Keep only the filters of these track ids."""
        keep = {int(i) for i in track_ids}
        self.filters = {i: f for i, f in self.filters.items() if i in keep}


def pose_areas(poses, boxes=None, keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD
               ) -> np.ndarray:
    """The object area of each pose for OKS: its box's w * h, or, where there is no box or it is
    empty, the area of the span of its joints scored at least keypoint_threshold (all joints if
    none is); at least 1 square pixel."""
    poses = np.asarray(poses, dtype=np.float64)
    areas = np.zeros(len(poses))
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(poses):
            raise ValueError(f"expected one box per pose ({len(poses)}), got {len(boxes)}")
        areas = np.clip(boxes[:, 2], 0, None) * np.clip(boxes[:, 3], 0, None)
    for n in np.flatnonzero(~(areas > 0)):
        confident = poses[n, :, 2] >= keypoint_threshold
        joints = poses[n, confident if confident.any() else slice(None), :2]
        areas[n] = np.prod(joints.max(axis=0) - joints.min(axis=0))
    return np.maximum(areas, 1.0)


def oks_matrix(poses_a, areas_a, poses_b, areas_b, sigmas,
               keypoint_threshold: float | None = DEFAULT_KEYPOINT_THRESHOLD) -> np.ndarray:
    """OKS of every pose of poses_a (A, J, 3) against every pose of poses_b (B, J, 3), (A, B);
    only joints scored above keypoint_threshold in both poses count (None: all joints), and a
    pair with no such joint has OKS 0. The object area of a pair is the mean of its two areas."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    num_joints = sigmas.shape[0]
    poses_a = np.asarray(poses_a, dtype=np.float64).reshape(-1, num_joints, 3)
    poses_b = np.asarray(poses_b, dtype=np.float64).reshape(-1, num_joints, 3)
    areas_a = np.asarray(areas_a, dtype=np.float64).reshape(-1)
    oks = np.zeros((len(poses_a), len(poses_b)))
    if len(poses_b):
        for a, (pose, area) in enumerate(zip(poses_a, areas_a)):
            oks[a] = oks_iou(pose, poses_b, area, areas_b, sigmas, keypoint_threshold)
    return oks


def match_by_oks(oks, threshold: float = DEFAULT_OKS_THRESHOLD) -> list[tuple[int, int]]:
    """The (row, column) pairs of an OKS matrix that maximise the total OKS of the pairs that
    reach threshold (Hungarian method); no pair below threshold is returned."""
    oks = np.asarray(oks, dtype=np.float64)
    if oks.size == 0:
        return []
    counted = np.where(oks >= threshold, oks, 0.0)
    rows, columns = linear_sum_assignment(counted, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, columns) if oks[r, c] >= threshold]


class PoseTracker:
    """Track ids for the persons of consecutive frames, by OKS matching to the live tracks.

    update(poses, boxes) takes one frame's poses (N, J, 3) in image pixels and their boxes
    (N, 4) x, y, w, h (None: the span of the joints) and returns their track ids (N,), int64:
    the id of the live track each is matched to, or a new id (0, 1, 2, ... in order of
    appearance, never reused). Each track is compared with the last pose matched to it; a track
    unmatched in more than max_age consecutive frames is dropped (max_age 0: only the tracks of
    the previous frame can be matched).
    """

    def __init__(self, sigmas, oks_threshold: float = DEFAULT_OKS_THRESHOLD,
                 max_age: int = DEFAULT_MAX_AGE,
                 keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD):
        self.sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if not (0.0 <= float(oks_threshold) <= 1.0):
            raise ValueError(f"oks_threshold must lie in [0, 1], got {oks_threshold!r}")
        if int(max_age) != max_age or max_age < 0:
            raise ValueError(f"max_age must be a non-negative integer, got {max_age!r}")
        self.oks_threshold = float(oks_threshold)
        self.max_age = int(max_age)
        self.keypoint_threshold = float(keypoint_threshold)
        self.reset()

    def reset(self) -> None:
        """Drop every track; ids start again from 0."""
        self._ids = np.zeros(0, dtype=np.int64)
        self._poses = np.zeros((0, self.sigmas.shape[0], 3))
        self._areas = np.zeros(0)
        self._missed = np.zeros(0, dtype=np.int64)
        self._next_id = 0

    @property
    def track_ids(self) -> list[int]:
        """The ids of the live tracks."""
        return [int(i) for i in self._ids]

    def update(self, poses, boxes=None) -> np.ndarray:
        num_joints = self.sigmas.shape[0]
        poses = np.asarray(poses, dtype=np.float64)
        if poses.size == 0:
            poses = poses.reshape(0, num_joints, 3)
        if poses.ndim != 3 or poses.shape[1:] != (num_joints, 3):
            raise ValueError(f"poses must have shape (N, {num_joints}, 3), got {poses.shape}")
        areas = pose_areas(poses, boxes, self.keypoint_threshold)
        oks = oks_matrix(self._poses, self._areas, poses, areas, self.sigmas,
                         self.keypoint_threshold)
        ids = np.full(len(poses), -1, dtype=np.int64)
        matched = np.zeros(len(self._ids), dtype=bool)
        for track, person in match_by_oks(oks, self.oks_threshold):
            ids[person] = self._ids[track]
            matched[track] = True
        fresh = ids < 0
        ids[fresh] = self._next_id + np.arange(fresh.sum())
        self._next_id += int(fresh.sum())

        # Matched tracks take the new pose; unmatched ones age and die after max_age frames.
        missed = np.where(matched, 0, self._missed + 1)
        alive = ~matched & (missed <= self.max_age)
        self._ids = np.concatenate([self._ids[alive], ids])
        self._poses = np.concatenate([self._poses[alive], poses])
        self._areas = np.concatenate([self._areas[alive], areas])
        self._missed = np.concatenate([missed[alive], np.zeros(len(poses), dtype=np.int64)])
        return ids
