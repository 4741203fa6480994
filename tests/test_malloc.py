"""glibc's mmap threshold is fixed, so large freed buffers go back to the system."""

from __future__ import annotations

import ctypes
import sys

from twisted.trial.unittest import SynchronousTestCase

from rail.malloc import return_freed_buffers


class MallocTests(SynchronousTestCase):
    def test_fixed_on_glibc(self) -> None:
        """With glibc (Linux), mallopt accepts the threshold; calling it again is fine."""
        glibc = sys.platform.startswith("linux") and hasattr(
            ctypes.CDLL(None), "gnu_get_libc_version"
        )
        if not glibc:
            raise self.skipTest("glibc only")
        self.assertTrue(return_freed_buffers())
        self.assertTrue(return_freed_buffers())
