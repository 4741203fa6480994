"""Zone refreshes of the DNS service: built off the reactor thread, swapped in on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from rail.config import Config, load_config
from rail.dkim.keys import KeyStore
from rail.dns.lookup import NOERROR, NXDOMAIN
from rail.dns.service import DNSService, build_dns
from rail.dns.sources import serial_path
from rail.store.model import StoreUnavailableError
from tests.dns.test_cli import _write_config
from tests.support.threads import FakeThreads

_T0 = 1_800_000_000.0


class _Port:
    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5353)

    def stopListening(self) -> None:
        return None


class _Reactor(Clock):
    """A clock that "binds" UDP and TCP (MemoryReactor has no listenUDP)."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> _Port:
        return _Port()

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> _Port:
        return _Port()


class RefreshTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config = load_config(_write_config(Path(self.mktemp()).absolute()))
        self.config = attrs.evolve(self.config, local_domains=("example.com",))
        self.reactor = _Reactor()
        self.reactor.advance(_T0)
        self.keys = KeyStore.open(self.config.data_dir / "dkim")
        self.keys.ensure(["example.com", "example.org", self.config.hostname], _T0)
        self.threads = FakeThreads()
        self.oldest: float | None = None

    def service(self, **kwargs: Any) -> DNSService:
        kwargs.setdefault("oldest_pending", lambda: defer.succeed(self.oldest))
        service = build_dns(self.config, self.reactor, self.keys, in_thread=self.threads, **kwargs)
        assert service is not None
        return service

    def with_org(self) -> Config:
        return attrs.evolve(self.config, local_domains=("example.com", "example.org"))

    def serials(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(serial_path(self.config.data_dir).read_text())
        return document

    def test_built_in_a_thread_then_served(self) -> None:
        """A refresh hands the zone build (registry, keys, queue, serials file and its
        fsync) to the thread runner: until that work has run, the old zones are served
        and the serials file is untouched; then the new zones are served at once."""
        service = self.service(refresh_interval=None)
        self.assertEqual(service.server.origins, ["example.com"])
        done = service.refresh(self.with_org())
        self.assertEqual(len(self.threads.queued), 1)
        self.assertNoResult(done)
        self.assertEqual(service.server.origins, ["example.com"])
        self.assertNotIn("example.org", self.serials())
        self.threads.finish()
        self.assertEqual(service.server.origins, ["example.com", "example.org"])
        self.assertIn("example.org", self.serials())
        self.successResultOf(done)

    def test_default_reads_the_queue_in_the_thread_too(self) -> None:
        """Without ``oldest_pending``, the queue's oldest pending message is read by a
        thread job of its own, before the zone build: nothing runs on the reactor."""
        service = build_dns(self.config, self.reactor, self.keys, in_thread=self.threads)
        assert service is not None
        done = service.refresh(self.with_org())
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()  # the queue read (no database yet: nothing pending)
        self.assertEqual(service.server.origins, ["example.com"])
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.assertEqual(service.server.origins, ["example.com", "example.org"])
        self.successResultOf(done)

    def test_one_build_at_a_time(self) -> None:
        """Refreshes asked for while a build runs share one more build after it (the
        running one may have read the files before their change); builds never overlap,
        so the serials file has one writer and zones are swapped in the order asked."""
        service = self.service(refresh_interval=None)
        first = service.refresh()
        second = service.refresh(self.with_org())
        third = service.refresh()
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(service.server.origins, ["example.com"])
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.assertEqual(service.server.origins, ["example.com", "example.org"])
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(self.threads.queued, [])

    def test_failure_keeps_the_zones(self) -> None:
        """A build that fails (here: the queue cannot be read) is logged; the zones being
        served stay and the refresh still fires."""
        service = self.service(
            refresh_interval=None,
            oldest_pending=lambda: defer.fail(StoreUnavailableError("queue.sqlite3: locked")),
        )
        done = service.refresh(self.with_org())
        self.successResultOf(done)
        self.assertEqual(service.server.origins, ["example.com"])
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailableError)), 1)

    def test_old_keys_stay_while_mail_is_pending(self) -> None:
        """``oldest_pending`` decides which DKIM generations stay published: after a
        rotation, the old selector is served while mail received before the rotation is
        pending, and gone (NXDOMAIN) once nothing is."""
        service = self.service(refresh_interval=None)
        [old] = {
            k.selector for k in self.keys.published("example.com", None) if k.algorithm == "ed25519"
        }
        self.keys.rotate("example.com", _T0 + 100)
        name = f"{old}._domainkey.example.com"
        self.oldest = _T0 + 50
        service.refresh()
        self.threads.finish()
        self.assertEqual(service.server.lookup(name, dns.TXT).rcode, NOERROR)
        self.oldest = None
        service.refresh()
        self.threads.finish()
        self.assertEqual(service.server.lookup(name, dns.TXT).rcode, NXDOMAIN)

    def test_periodic_refresh_off_the_reactor(self) -> None:
        """Every refresh interval a build is handed to the thread runner; the next is
        scheduled only once it is done, and stopping waits for a build in progress."""
        service = self.service(refresh_interval=60.0)
        service.privilegedStartService()
        service.startService()
        self.reactor.advance(60)
        self.assertEqual(len(self.threads.queued), 1)
        self.reactor.advance(120)
        self.assertEqual(len(self.threads.queued), 1)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.threads.finish()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
