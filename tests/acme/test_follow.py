"""rail.acme.follow: a worker that does not order serves the certificate worker 0 saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.follow import AcmeFollower
from rail.pki.files import PKIError
from rail.pki.tls import ServerMaterial
from tests.acme.helpers import NOW, material


def _at_once(f: Any) -> Deferred[Any]:
    return succeed(f())


class FollowerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.saved: list[ServerMaterial | PKIError | None] = [None]
        self.installed: list[int] = []
        self.follower = AcmeFollower(
            clock=self.clock,
            load=self.load,
            in_thread=_at_once,
            install=lambda m: self.installed.append(m.chain[0].serial_number),
            current=1,
            interval=300.0,
        )

    def load(self, now: datetime) -> ServerMaterial | None:
        saved = self.saved[0]
        if isinstance(saved, PKIError):
            raise saved
        return saved

    def test_nothing_saved(self) -> None:
        """No saved certificate yet: nothing installed, the next look in ``interval``."""
        self.follower.startService()
        self.clock.advance(300)
        self.assertEqual(self.installed, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.follower.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_renewal_followed(self) -> None:
        """A certificate saved with another serial is installed at the next look, once."""
        self.follower.startService()
        self.saved[0] = material(serial=1)  # the one being served
        self.clock.advance(300)
        self.assertEqual(self.installed, [])
        self.saved[0] = material(serial=2)
        self.clock.advance(300)
        self.assertEqual(self.installed, [2])
        self.clock.advance(300)
        self.assertEqual(self.installed, [2])
        self.assertEqual(self.follower.current, 2)
        self.follower.stopService()

    def test_unusable_file(self) -> None:
        """A saved file that cannot be used is logged and changes nothing."""
        self.saved[0] = PKIError("server.pem: no PEM certificate in it")
        self.successResultOf(self.follower.look())
        self.assertEqual(self.installed, [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)
