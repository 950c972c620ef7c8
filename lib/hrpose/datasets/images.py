"""Reading image files, with one clear error (or warning) per bad file that names it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import cv2
import numpy as np
import simplejpeg

from ..errors import DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)

READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
# Some encoders pad a JPEG after its end marker; the marker is looked for this far from the end.
JPEG_END_SEARCH_BYTES = 1024

# Truncated files already named in this process's log.
_warned_truncated: set[str] = set()


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what native libraries (libjpeg, FFmpeg) print on file descriptor 2 meanwhile."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def opencv_log_silenced():
    """Mute OpenCV's own log (its "[ERROR] ... imdecode_" lines for a corrupt file) meanwhile;
    the caller reports the failure in one line of its own."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def is_truncated_jpeg(data: np.ndarray) -> bool:
    """Whether the bytes of a file start as a JPEG but lack its end marker (a cut-off download or
    copy). Entropy-coded data never holds that marker, so its absence near the end is telling."""
    head = data[:2].tobytes()
    tail = data[-JPEG_END_SEARCH_BYTES:].tobytes()
    return head == JPEG_START and JPEG_END not in tail


def read_image_bytes(path: str) -> np.ndarray:
    """The bytes of an image file; errors name the file and say what is wrong with it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataFileNotFoundError(f"image not found: '{path}'") from None
    except IsADirectoryError:
        raise DataError(f"image '{path}' is a folder, not a file") from None
    except OSError as error:
        raise DataError(f"cannot read image '{path}': {error.strerror or error}") from None
    if data.size == 0:
        raise DataError(f"image '{path}' is an empty file (0 bytes)")
    return data


def read_image(path: str, color_rgb: bool) -> np.ndarray:
    """Read an image as HxWx3 uint8 (BGR unless color_rgb); one clear error if it cannot be read.

    A truncated JPEG is used as OpenCV's imread decodes it (the missing rows grey), as the
    reference code trains on it; a warning names the file once per process instead of libjpeg's
    anonymous "Premature end of JPEG file".
    """
    data = read_image_bytes(path)
    if is_truncated_jpeg(data):
        image = _read_truncated_jpeg(path)
    else:
        image = decode_image(data)
    if image is None:
        raise DataError(f"cannot decode image '{path}' ({data.size} bytes): corrupt, or not an "
                        f"image format OpenCV reads")
    if color_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def decode_image(data: np.ndarray) -> np.ndarray | None:
    """BGR uint8 pixels of an image file's bytes, as cv2.imdecode gives them; None if it cannot.

    JPEGs are decoded by simplejpeg: the same libjpeg-turbo decoding (accurate integer IDCT,
    smooth chroma upsampling) that OpenCV runs, so the same pixels, without OpenCV's overhead.
    A JPEG it rejects or warns about (corrupt data, CMYK) and every other format go to OpenCV,
    which decides as before.
    """
    if data[:2].tobytes() == JPEG_START:
        try:
            return simplejpeg.decode_jpeg(data, colorspace="BGR")
        except ValueError:
            pass
    with opencv_log_silenced():
        return cv2.imdecode(data, READ_FLAGS)


def _read_truncated_jpeg(path: str) -> np.ndarray | None:
    # cv2.imdecode rejects a truncated JPEG while cv2.imread keeps what libjpeg decoded.
    with native_stderr_silenced():
        image = cv2.imread(path, READ_FLAGS)
    if image is not None and path not in _warned_truncated:
        _warned_truncated.add(path)
        logger.warning("image '%s' is a truncated JPEG (no end marker): using the part that "
                       "decodes, the rest is grey", path)
    return image
