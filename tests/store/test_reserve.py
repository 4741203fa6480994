"""The disk reserve: freed when free space falls under its size, made again with room."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.store import reserve
from rail.store.reserve import RESERVE_NAME, free_bytes, settle

_MB = 1024 * 1024


class SettleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.reserve = self.directory / RESERVE_NAME

    def test_created_with_room(self) -> None:
        """With free space of at least max(min_free, size) + size, the reserve is made:
        ``size`` bytes really allocated, no temporary file left."""
        self.assertEqual(settle(self.directory, _MB, 4 * _MB, free=5 * _MB), "created")
        self.assertEqual(self.reserve.stat().st_size, _MB)
        self.assertGreaterEqual(self.reserve.stat().st_blocks * 512, _MB)
        self.assertEqual([p.name for p in self.directory.iterdir()], [RESERVE_NAME])

    def test_not_created_without_room(self) -> None:
        """Under that threshold nothing is made, so a made reserve is not freed again at
        once: free space after making it stays at or above its size and min_free."""
        self.assertIsNone(settle(self.directory, _MB, 4 * _MB, free=5 * _MB - 1))
        self.assertIsNone(settle(self.directory, 4 * _MB, 0, free=8 * _MB - 1))
        self.assertFalse(self.reserve.exists())

    def test_released_when_nearly_full(self) -> None:
        """A reserve is freed once free space is under its size, and kept above."""
        settle(self.directory, _MB, 0, free=10 * _MB)
        self.assertIsNone(settle(self.directory, _MB, 0, free=_MB))
        self.assertTrue(self.reserve.exists())
        self.assertEqual(settle(self.directory, _MB, 0, free=_MB - 1), "released")
        self.assertFalse(self.reserve.exists())

    def test_size_zero_keeps_none(self) -> None:
        """``reserve: 0B`` removes a reserve left by an earlier configuration and makes
        none."""
        settle(self.directory, _MB, 0, free=10 * _MB)
        self.assertEqual(settle(self.directory, 0, 0, free=10 * _MB), "released")
        self.assertIsNone(settle(self.directory, 0, 0, free=10 * _MB))
        self.assertFalse(self.reserve.exists())

    def test_missing_directory(self) -> None:
        """No reserve is made before the queue directory exists; free space is measured
        on the nearest existing parent."""
        missing = self.directory / "queue"
        self.assertIsNone(settle(missing, _MB, 0, free=10 * _MB))
        self.assertFalse(missing.exists())
        # Which directory is measured, not how much is free (other tests write meanwhile).
        measured: list[object] = []
        real = reserve.os.statvfs

        def statvfs(path: Path) -> object:
            measured.append(path)
            return real(path)

        self.patch(reserve.os, "statvfs", statvfs)
        free_bytes(missing / "deeper")
        self.assertEqual(measured, [self.directory])

    def test_measures_free_space(self) -> None:
        """Without ``free``, the file system's free space decides (plenty here)."""
        self.assertEqual(settle(self.directory, 64 * 1024, 0), "created")
