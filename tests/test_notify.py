"""rail.notify: the systemd notification datagram, without libsystemd."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.notify import notify


class NotifyTests(SynchronousTestCase):
    def receiver(self, address: str) -> socket.socket:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(address)
        receiver.settimeout(5)
        return receiver

    def short_directory(self) -> Path:
        """A directory whose socket paths fit in sun_path (trial's may not)."""
        directory = Path(tempfile.mkdtemp(prefix="rail-notify-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def test_no_socket(self) -> None:
        """Without $NOTIFY_SOCKET (not under systemd) nothing is sent and nothing fails."""
        self.assertIsNone(notify("READY=1", {}))
        self.assertIsNone(notify("READY=1", {"NOTIFY_SOCKET": ""}))

    def test_path(self) -> None:
        """A path socket receives the state as one datagram."""
        path = str(self.short_directory() / "notify")
        receiver = self.receiver(path)
        self.assertIsNone(notify("READY=1", {"NOTIFY_SOCKET": path}))
        self.assertEqual(receiver.recv(4096), b"READY=1")

    def test_abstract(self) -> None:
        """``@name`` is a socket in the abstract namespace."""
        name = f"rail-test-{os.getpid()}-{id(self)}"
        receiver = self.receiver("\0" + name)
        self.assertIsNone(notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(receiver.recv(4096), b"STOPPING=1")

    def test_failure_is_reported_not_raised(self) -> None:
        """A socket that is not there, or an address that is neither a path nor an
        abstract name, gives a reason to log instead of an exception."""
        missing = str(self.short_directory() / "absent")
        problem = notify("READY=1", {"NOTIFY_SOCKET": missing})
        assert problem is not None
        self.assertIn(f"cannot notify systemd at {missing}", problem)
        problem = notify("READY=1", {"NOTIFY_SOCKET": "relative/notify"})
        assert problem is not None
        self.assertIn("neither a path nor an abstract name", problem)
