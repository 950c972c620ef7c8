"""The malloc settings the tools apply at start."""

import platform
import sys

from hrpose.utils.allocator import reuse_freed_memory


def test_applies_on_glibc_only_and_once():
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is on_glibc
    assert reuse_freed_memory() is on_glibc  # idempotent (cached)
