"""ACME against pebble (Let's Encrypt's test CA): HTTP-01 on Rail's port-80 site, the
certificate hot-swapped into a live TLS listener, and renewal driven by a Clock.

Everything runs on loopback: pebble (a child process, Debian package ``pebble``) resolves
the test names through a loopback DNS server to 127.0.0.1 and validates on the port Rail's
port-80 site listens on. The ACME client runs in the reactor's thread pool, as in
production; only the renewal schedule uses a Clock.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.acme.challenges import PendingChallenges
from rail.acme.decide import certificate_names
from rail.acme.service import AcmeService, build_acme
from rail.acme.storage import account_key_path, server_pem_path
from rail.pki.ca import create_ca
from rail.pki.files import certificate_pem, write_file_atomic
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key, private_key_pem
from rail.pki.tls import ServerMaterial, ServerTLS
from rail.startup import prepare_pki
from rail.web.http80 import http80_site
from tests.integration.fixtures import make_config
from tests.integration.processes import Server, free_port, wait_for_port
from tests.support.dnsserver import start_dns
from tests.support.tools import need_tool

PEBBLE = shutil.which("pebble")
HOSTNAME = "mail.rail.test"
NAMES = (HOSTNAME, "mta-sts.rail.test")
_ISSUE_TIMEOUT = 60.0


def _pebble_tls(directory: Path) -> Path:
    """A CA and a server certificate for pebble's own HTTPS; returns the CA file."""
    now = datetime.now(UTC)
    ca = create_ca("pebble test TLS CA", now, key_type="ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    cert = issue_server_certificate(ca, "localhost", ("127.0.0.1",), key.public_key(), now)
    write_file_atomic(directory / "pebble.crt", certificate_pem(cert), 0o644)
    write_file_atomic(directory / "pebble.key", private_key_pem(key), 0o600)
    write_file_atomic(directory / "pebble-ca.crt", certificate_pem(ca.certificate), 0o644)
    return directory / "pebble-ca.crt"


def _fetch(url: str, ca_file: Path) -> bytes:
    """GET over HTTPS verified with ``ca_file`` (blocking: call it in a thread)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        data: bytes = response.read()
        return data


def _served_leaf(port: int, trust: Path) -> x509.Certificate:
    """Handshake with 127.0.0.1:port as ``mail.rail.test``, verifying the chain against
    ``trust`` and the name; returns the leaf (blocking: call it in a thread)."""
    context = ssl.create_default_context(cafile=str(trust))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class _Recording(PendingChallenges):
    """Counts the challenge requests answered from the registry."""

    answered = 0

    def get(self, token: str) -> str | None:
        answer = super().get(token)
        if answer is not None:
            self.answered += 1
        return answer


class _Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello\r\n")
        self.transport.loseConnection()


class PebbleTests(TestCase):
    timeout = 180

    def setUp(self) -> Any:
        need_tool("pebble", "pebble")
        return self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        self.data = self.base / "data"

        self.challenges = _Recording()
        http_port = reactor.listenTCP(
            0, http80_site(HOSTNAME, self.challenges, clock=reactor), interface="127.0.0.1"
        )
        self.addCleanup(http_port.stopListening)

        address = dns.Record_A("127.0.0.1", ttl=1)
        self.dns = yield Deferred.fromCoroutine(
            start_dns(reactor, {name: [address] for name in NAMES})
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(self.dns.stop()))

        tls_ca = _pebble_tls(self.base)
        acme_port, management_port = free_port(), free_port()
        config_path = self.base / "pebble.json"
        config_path.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{acme_port}",
                        "managementListenAddress": f"127.0.0.1:{management_port}",
                        "certificate": str(self.base / "pebble.crt"),
                        "privateKey": str(self.base / "pebble.key"),
                        "httpPort": http_port.getHost().port,
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        self.pebble = Server()
        assert PEBBLE is not None
        reactor.spawnProcess(
            self.pebble,
            PEBBLE,
            [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{self.dns.port}"],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
                # Validate on every order, renewals included, instead of at random.
                "PEBBLE_AUTHZREUSE": "0",
            },
        )
        self.addCleanup(self._stop_pebble)
        yield wait_for_port(acme_port, self.pebble, timeout=20)
        yield wait_for_port(management_port, self.pebble, timeout=20)
        root = yield deferToThread(_fetch, f"https://127.0.0.1:{management_port}/roots/0", tls_ca)
        self.pebble_root = self.base / "pebble-root.crt"
        self.pebble_root.write_bytes(root)

        self.config = make_config(
            self.data,
            hostname=HOSTNAME,
            tls={
                "acme": {
                    "directory": f"https://127.0.0.1:{acme_port}/dir",
                    "ca_file": str(tls_ca),
                    "email": "ops@rail.test",
                }
            },
        )
        self.pki = prepare_pki(self.config, datetime.now(UTC))
        self.tls = ServerTLS(self.pki.server, None)
        factory = protocol.Factory.forProtocol(_Hello)
        endpoint = SSL4ServerEndpoint(reactor, 0, self.tls, interface="127.0.0.1")
        listening = yield endpoint.listen(factory)
        self.addCleanup(listening.stopListening)
        self.tls_port: int = listening.getHost().port

    @inlineCallbacks
    def _stop_pebble(self) -> Any:
        if not self.pebble.ended.called:
            self.pebble.signal("KILL")
        yield self.pebble.ended

    def _service(self, clock: Clock) -> tuple[AcmeService, DeferredQueue[ServerMaterial]]:
        """The renewal service wired to the TLS listener, and a queue of what it installs."""
        installed: DeferredQueue[ServerMaterial] = DeferredQueue()

        def install(material: ServerMaterial) -> None:
            self.tls.replace(material)
            # Resume the test after the service has finished handling the issue.
            reactor.callLater(0, installed.put, material)

        service = build_acme(
            self.config,
            reactor,
            install=install,
            names=NAMES,
            challenges=self.challenges,
            clock=clock,
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service, installed

    def _next(self, installed: DeferredQueue[ServerMaterial]) -> Deferred[ServerMaterial]:
        """The next installed certificate, within a bounded wait."""
        return installed.get().addTimeout(_ISSUE_TIMEOUT, reactor)

    @inlineCallbacks
    def test_issue_install_and_renew(self) -> Any:
        """Rail obtains a certificate for its names from pebble through HTTP-01 on its
        port-80 site, a live TLS listener serves it without restart, and once the Clock
        reaches the renewal window a new certificate replaces it the same way."""
        before = yield deferToThread(_served_leaf, self.tls_port, self.data / "ca" / "ca.crt")
        self.assertEqual(before, self.pki.server.chain[0])

        clock = Clock()
        clock.advance(reactor.seconds())
        service, installed = self._service(clock)
        clock.advance(0)
        first = yield self._next(installed)

        leaf = first.chain[0]
        self.assertEqual(certificate_names(leaf), frozenset(NAMES))
        self.assertGreater(len(first.chain), 1)  # pebble's intermediate comes along
        served = yield deferToThread(_served_leaf, self.tls_port, self.pebble_root)
        self.assertEqual(served, leaf)
        self.assertEqual(len(self.challenges), 0)
        # pebble resolved both names through the loopback DNS and fetched each token.
        self.assertEqual({name for name, _ in self.dns.queries} & set(NAMES), set(NAMES))
        self.assertGreaterEqual(self.challenges.answered, len(NAMES))
        answered = self.challenges.answered
        self.assertEqual(server_pem_path(self.data).stat().st_mode & 0o777, 0o600)
        self.assertEqual(account_key_path(self.data).stat().st_mode & 0o777, 0o600)
        account_key = account_key_path(self.data).read_bytes()
        self.assertEqual(service.failures, 0)
        self.assertEqual(service.next_check, clock.seconds() + 86400)

        # Nothing to do a day later; at the renewal window, a new order.
        clock.advance(86400)
        self.assertIsNotNone(service.next_check)
        assert self.config.tls.acme is not None
        renew_at = leaf.not_valid_after_utc - timedelta(seconds=self.config.tls.acme.renew_before)
        clock.advance(renew_at.timestamp() - clock.seconds())
        self.assertIsNone(service.next_check)  # the order is in progress
        second = yield self._next(installed)

        self.assertNotEqual(second.chain[0].serial_number, leaf.serial_number)
        served = yield deferToThread(_served_leaf, self.tls_port, self.pebble_root)
        self.assertEqual(served, second.chain[0])
        self.assertEqual(account_key_path(self.data).read_bytes(), account_key)
        self.assertEqual(len(self.challenges), 0)
        self.assertGreaterEqual(self.challenges.answered, answered + len(NAMES))

    @inlineCallbacks
    def test_restart_serves_saved_certificate(self) -> Any:
        """After an order, a restart serves the saved ACME certificate from the start and
        orders nothing new."""
        clock = Clock()
        clock.advance(reactor.seconds())
        service, installed = self._service(clock)
        clock.advance(0)
        first = yield self._next(installed)
        yield service.stopService()

        pki = prepare_pki(self.config, datetime.now(UTC))
        self.assertEqual(pki.server.chain, first.chain)
        again, _ = self._service(clock)
        clock.advance(0)
        self.assertEqual(again.next_check, clock.seconds() + 86400)

    @inlineCallbacks
    def test_failed_validation_backs_off(self) -> Any:
        """When pebble cannot validate a name the order fails with the CA's reason, the
        pending tokens are withdrawn, and the service schedules a retry a minute later."""
        self.dns.set_records("mta-sts.rail.test", [])
        failed: Deferred[dict[str, Any]] = Deferred()

        def observe(event: dict[str, Any]) -> None:
            if "failures" in event and not failed.called:
                failed.callback(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        clock = Clock()
        clock.advance(reactor.seconds())
        service, installed = self._service(clock)
        clock.advance(0)
        event = yield failed.addTimeout(_ISSUE_TIMEOUT, reactor)

        self.assertIn("AcmeError: validation failed: mta-sts.rail.test", event["error"])
        self.assertEqual(service.failures, 1)
        assert service.next_check is not None
        self.assertTrue(45 <= service.next_check - clock.seconds() <= 60)
        self.assertEqual(len(self.challenges), 0)
        self.assertEqual(len(installed.pending), 0)
        self.assertFalse(server_pem_path(self.data).exists())
