"""Process-wide settings of glibc's malloc for the image-sized tensors of CPU inference."""

from __future__ import annotations

import ctypes
import functools
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory above the heap's top beyond this still goes back to the system.
TRIM_THRESHOLD = 1 << 30


@functools.lru_cache(maxsize=None)
def reuse_freed_memory() -> bool:
    """Let glibc keep freed memory in the process, so each image reuses the last one's buffers.

    By default glibc maps blocks above a (dynamic) threshold afresh and returns freed memory at
    the top of its heap to the system; a pipeline that allocates and frees image-sized maps then
    faults every page of them in again for every image, which on the CPU costs about as much as
    the bottom-up post-processing itself. Blocks up to 32 MiB now come from the heap, and up to
    1 GiB of free heap is kept. Returns whether the settings took effect (False off glibc).
    The tools call it once at start; a program using the library can call it too.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        applied = (libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD) == 1
                   and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False
    if not applied:
        logger.debug("glibc refused the malloc settings")
    return applied
