"""rail.ownership: what a start as root creates under data_dir goes to the --uid user."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.ownership import HandOver, hand_over, target_ids
from tests.support.tools import need_root

_NOBODY = pwd.getpwnam("nobody")
_OTHER = 4242  # a uid that owns nothing else here


class TargetTests(SynchronousTestCase):
    def test_ids_as_twistd_computes_them(self) -> None:
        """No --uid and no --gid: nothing to hand over; --uid alone: the user's primary
        group, as twistd switches to; --gid alone: this process's uid."""
        self.assertIsNone(target_ids(None, None))
        self.assertEqual(target_ids(_NOBODY.pw_uid, None), (_NOBODY.pw_uid, _NOBODY.pw_gid))
        self.assertEqual(target_ids(None, 100), (os.getuid(), 100))
        self.assertEqual(target_ids(5, 6), (5, 6))


class HandOverTests(SynchronousTestCase):
    def setUp(self) -> None:
        need_root("changing a file's owner")
        self.data = Path(self.mktemp()).absolute()
        (self.data / "queue").mkdir(parents=True)
        (self.data / "queue" / "queue.sqlite3").write_bytes(b"")
        (self.data / "dkim" / "example.com").mkdir(parents=True)
        (self.data / "dkim" / "example.com" / "key.pem").write_bytes(b"")
        self.outside = self.data.parent / "outside"
        self.outside.write_bytes(b"")
        (self.data / "link").symlink_to(self.outside)
        (self.data / "theirs").write_bytes(b"")
        os.chown(self.data / "theirs", _OTHER, _OTHER)

    def owner(self, path: Path) -> tuple[int, int]:
        status = path.lstat()
        return status.st_uid, status.st_gid

    def test_tree_handed_over(self) -> None:
        """The directory and every entry root owns under it change owner, symbolic links
        themselves and not their targets; another user's entry is left alone; a second
        pass changes nothing."""
        ids = (_NOBODY.pw_uid, _NOBODY.pw_gid)
        self.assertEqual(hand_over(self.data, *ids), 7)
        for path in (
            self.data,
            self.data / "queue",
            self.data / "queue" / "queue.sqlite3",
            self.data / "dkim",
            self.data / "dkim" / "example.com",
            self.data / "dkim" / "example.com" / "key.pem",
            self.data / "link",
        ):
            self.assertEqual(self.owner(path), ids, path)
        self.assertEqual(self.owner(self.outside), (0, 0))
        self.assertEqual(self.owner(self.data / "theirs"), (_OTHER, _OTHER))
        self.assertEqual(hand_over(self.data, *ids), 0)

    def test_missing_directory(self) -> None:
        """A data directory that does not exist is nothing to hand over."""
        self.assertEqual(hand_over(self.data / "absent", _NOBODY.pw_uid, _NOBODY.pw_gid), 0)

    def test_service_hands_over_in_privileged_start(self) -> None:
        """The service does its work in the privileged start (before twistd drops
        privileges), and not at all for uid 0."""
        HandOver(self.data, 0, 0).privilegedStartService()
        self.assertEqual(self.owner(self.data / "queue"), (0, 0))
        HandOver(self.data, _NOBODY.pw_uid, _NOBODY.pw_gid).privilegedStartService()
        self.assertEqual(self.owner(self.data / "queue"), (_NOBODY.pw_uid, _NOBODY.pw_gid))
