"""Non-maximum suppression of poses by object keypoint similarity (OKS)."""

import warnings

from hrpose.nms import oks_nms_numpy as numpy_impl

try:
    from hrpose.nms import _oks_nms as compiled_impl
except ImportError:
    compiled_impl = None
    warnings.warn(
        "hrpose.nms: the compiled OKS-NMS extension (hrpose.nms._oks_nms) is unavailable, so the "
        "slower NumPy fallback is used; build it with `make` or `pip install -e .` in the "
        "repository root (needs Cython and a C compiler).",
        RuntimeWarning,
        stacklevel=2,
    )

COMPILED = compiled_impl is not None

# Both implementations return identical kept indices, so the choice only changes the speed.
_active_impl = compiled_impl if COMPILED else numpy_impl
oks_iou = _active_impl.oks_iou
oks_nms = _active_impl.oks_nms
soft_oks_nms = _active_impl.soft_oks_nms

__all__ = ["COMPILED", "compiled_impl", "numpy_impl", "oks_iou", "oks_nms", "soft_oks_nms"]
