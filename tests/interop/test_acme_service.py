"""A real ``twistd rail`` in ACME mode gets its certificate from pebble and serves it on
every TLS listener: the wiring of ``tls.acme`` in :func:`rail.service.build_service`.

tests/interop/test_acme.py drives :mod:`rail.acme` against pebble with a hand-built
``ServerTLS``; here Rail runs as a child process started from ``rail init --dev`` with
``tls.acme`` pointing at pebble (Debian package ``pebble``, a child process too). pebble
resolves Rail's names to 127.0.0.1 through a loopback DNS server, or through Rail's own
``listen.dns`` with its default response rate limits, and validates HTTP-01 on Rail's own
``listen.http`` port. Clients connect with Python's ``ssl``, trusting only
pebble's root, to the HTTPS, submission (implicit TLS) and inbound (STARTTLS) listeners.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import smtplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.acme.decide import certificate_names
from tests.integration.processes import Server, free_port, wait_for_port
from tests.interop.helpers import RunningRail, start_rail
from tests.interop.test_acme import _fetch, _pebble_tls
from tests.support.dnsserver import start_dns
from tests.support.tools import need_tool

PEBBLE = shutil.which("pebble")
HOSTNAME = "rail.test"
# What Rail orders with the dev configuration: hostname, then mta-sts.<d> per local domain.
NAMES = frozenset({HOSTNAME, "mta-sts.rail.test"})
_ISSUE_TIMEOUT = 60.0


def _loopback(address: tuple[str, int], timeout: float, *_: Any) -> socket.socket:
    """Connect to ``address``'s port on 127.0.0.1 whatever its host name, so that
    clients verify the certificate for ``rail.test`` (which nothing resolves)."""
    return socket.create_connection(("127.0.0.1", address[1]), timeout)


class _LoopbackSMTP(smtplib.SMTP):
    """An SMTP client that connects to 127.0.0.1 but verifies STARTTLS for its host."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _loopback((host, port), timeout)


class _LoopbackSMTPS(smtplib.SMTP_SSL):
    """An implicit-TLS SMTP client that connects to 127.0.0.1 and verifies its host."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.context.wrap_socket(_loopback((host, port), timeout), server_hostname=host)


def _https_leaf(port: int, context: ssl.SSLContext) -> tuple[int, x509.Certificate]:
    """GET /healthz over HTTPS to ``rail.test`` on loopback: the status and the
    server's verified leaf (blocking: call it in a thread)."""
    connection = http.client.HTTPSConnection(HOSTNAME, port, timeout=10, context=context)
    connection._create_connection = _loopback  # type: ignore[attr-defined]
    try:
        connection.connect()
        assert isinstance(connection.sock, ssl.SSLSocket)
        der = connection.sock.getpeercert(binary_form=True)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    finally:
        connection.close()
    assert der is not None
    return status, x509.load_der_x509_certificate(der)


def _unverified_leaf(port: int) -> x509.Certificate:
    """Whatever leaf the listener on ``port`` serves, unverified (blocking)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _smtps_leaf(port: int, context: ssl.SSLContext) -> tuple[bytes, x509.Certificate]:
    """Implicit TLS to the submission port: the greeting and the server's leaf
    (blocking)."""
    with _LoopbackSMTPS(HOSTNAME, port, context=context, timeout=10) as client:
        code, text = client.ehlo()
        assert code == 250, (code, text)
        assert isinstance(client.sock, ssl.SSLSocket)
        der = client.sock.getpeercert(binary_form=True)
    assert der is not None
    return text, x509.load_der_x509_certificate(der)


def _starttls_leaf(port: int, context: ssl.SSLContext) -> x509.Certificate:
    """STARTTLS on the inbound port: the server's leaf (blocking)."""
    with _LoopbackSMTP(HOSTNAME, port, timeout=10) as client:
        client.ehlo("client.test")
        code, text = client.starttls(context=context)
        assert code == 220, (code, text)
        assert isinstance(client.sock, ssl.SSLSocket)
        der = client.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class _PebbleCase(TestCase):
    """pebble and a Rail in ACME mode against it; see the module docstring."""

    timeout = 180

    def setUp(self) -> Any:
        need_tool("pebble", "pebble")
        return Deferred.fromCoroutine(self._start_dns_and_pebble())

    async def _start_dns_and_pebble(self) -> None:
        """The DNS server pebble resolves through, and pebble."""
        raise NotImplementedError

    async def _start_pebble(self, dns_port: int) -> None:
        """pebble, resolving names through the DNS server on 127.0.0.1 ``dns_port`` and
        validating HTTP-01 on ``self.http_port``."""
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        self.http_port = free_port()

        self.tls_ca = _pebble_tls(self.base)
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
                        "httpPort": self.http_port,
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
            [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
            },
        )
        self.addCleanup(self._stop_pebble)
        await wait_for_port(acme_port, self.pebble, timeout=20)
        await wait_for_port(management_port, self.pebble, timeout=20)
        self.directory_url = f"https://127.0.0.1:{acme_port}/dir"
        management = f"https://127.0.0.1:{management_port}"
        self.pebble_root = self.base / "pebble-root.crt"
        self.pebble_root.write_bytes(
            await deferToThread(_fetch, f"{management}/roots/0", self.tls_ca)
        )
        intermediate = await deferToThread(_fetch, f"{management}/intermediates/0", self.tls_ca)
        self.intermediate = x509.load_pem_x509_certificate(intermediate)

    async def _stop_pebble(self) -> None:
        if not self.pebble.ended.called:
            self.pebble.signal("KILL")
        await self.pebble.ended

    async def _start_rail(
        self, more: Callable[[dict[str, Any]], None] | None = None
    ) -> RunningRail:
        """Rail in ACME mode against pebble; ``more`` changes the configuration further."""

        def configure(document: dict[str, Any]) -> None:
            document["tls"] = {
                "acme": {
                    "directory": self.directory_url,
                    "ca_file": str(self.tls_ca),
                    "email": "ops@rail.test",
                }
            }
            document["listen"]["http"] = f"tcp:{self.http_port}:interface=127.0.0.1"
            if more is not None:
                more(document)

        running: RunningRail = await start_rail(self, configure)
        await wait_for_port(self.http_port, running.server)
        return running

    def _trusting_pebble(self, running: RunningRail | None = None) -> ssl.SSLContext:
        """A client context that trusts pebble's root only (and, given ``running``,
        presents its app's client certificate, which submission requires)."""
        context = ssl.create_default_context(cafile=str(self.pebble_root))
        if running is not None:
            context.load_cert_chain(str(running.cert), str(running.key))
        return context

    async def _wait_for_pebble_leaf(self, running: RunningRail) -> x509.Certificate:
        """Poll the HTTPS listener until its certificate verifies against pebble's root."""
        waited = 0.0
        context = self._trusting_pebble()
        while True:
            if running.server.ended.called:
                self.fail(f"rail exited:\n{running.server.output.decode(errors='replace')}")
            try:
                status, leaf = await deferToThread(_https_leaf, running.https_port, context)
            except ssl.SSLCertVerificationError as error:
                if waited >= _ISSUE_TIMEOUT:
                    served = await deferToThread(_unverified_leaf, running.https_port)
                    self.fail(
                        f"no pebble certificate on https after {waited:.0f}s ({error}); "
                        f"served: {served.subject.rfc4514_string()}, issuer "
                        f"{served.issuer.rfc4514_string()}, serial {served.serial_number:x}\n"
                        + running.server.output.decode(errors="replace")
                    )
                await deferLater(reactor, 0.5, lambda: None)
                waited += 0.5
                continue
            self.assertEqual(status, 200)
            return leaf


class AcmeServiceTests(_PebbleCase):
    async def _start_dns_and_pebble(self) -> None:
        """The loopback DNS and pebble resolving through it."""
        address = dns.Record_A("127.0.0.1", ttl=1)
        self.dns = await start_dns(reactor, {name: [address] for name in NAMES})
        self.addCleanup(self.dns.stop)
        await self._start_pebble(self.dns.port)

    async def test_certificate_from_pebble_on_every_listener(self) -> None:
        """twistd rail with ``tls.acme`` orders a certificate for its host name and the
        MTA-STS names of its local domains from pebble, answers HTTP-01 on its own
        ``listen.http`` port, and, without a restart, serves the issued leaf (issued by
        pebble's intermediate, chain verified against pebble's root, for ``rail.test``) on
        the HTTPS listener, on the submission listener (implicit TLS) and after STARTTLS
        on the inbound listener."""
        running = await self._start_rail()
        leaf = await self._wait_for_pebble_leaf(running)

        self.assertEqual(leaf.issuer, self.intermediate.subject)
        self.assertEqual(certificate_names(leaf), NAMES)
        # pebble resolved both names through the loopback DNS to reach Rail's port 80.
        self.assertEqual({name for name, _ in self.dns.queries} & NAMES, NAMES)

        greeting, submission_leaf = await deferToThread(
            _smtps_leaf, running.smtps_port, self._trusting_pebble(running)
        )
        self.assertEqual(submission_leaf, leaf)
        self.assertTrue(greeting.startswith(HOSTNAME.encode()), greeting)

        inbound_leaf = await deferToThread(
            _starttls_leaf, running.inbound_port, self._trusting_pebble()
        )
        self.assertEqual(inbound_leaf, leaf)

        # A SIGHUP re-reads the configuration but leaves the ACME certificate in place.
        running.server.signal("HUP")
        waited = 0.0
        while b"reload done" not in running.server.output:
            if running.server.ended.called or waited >= 15:
                self.fail(running.server.output.decode(errors="replace"))
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1
        _, after_reload = await deferToThread(
            _https_leaf, running.https_port, self._trusting_pebble()
        )
        self.assertEqual(after_reload, leaf)
        self.assertFalse(running.server.ended.called)


# Five more local domains: seven names, each validated from three vantage points by A and
# AAAA look-ups (42 queries within a moment from 127.0.0.1), where a budget of 20 per
# client network (the limiter before per-response keys) answered only about 20.
_MORE_DOMAINS = tuple(f"d{i}.test" for i in range(1, 6))
MANY_NAMES = NAMES | {f"mta-sts.{domain}" for domain in _MORE_DOMAINS}


class AcmeThroughRailDNSTests(_PebbleCase):
    """pebble resolves Rail's names through Rail's own DNS server (``listen.dns``), whose
    default response rate limits stay in force."""

    async def _start_dns_and_pebble(self) -> None:
        self.dns_port = free_port()
        await self._start_pebble(self.dns_port)

    async def test_many_names_with_default_rate_limits(self) -> None:
        """An order for seven names (the host name and the MTA-STS names of six local
        domains) is validated by pebble through Rail's DNS with the default
        ``dns.rate_limit``: each name's A and AAAA questions are their own responses, so
        the CA's burst of look-ups from one network is answered in full."""

        def configure(document: dict[str, Any]) -> None:
            document["local_domains"] = [HOSTNAME, *_MORE_DOMAINS]
            document["listen"]["dns"] = f"tcp:{self.dns_port}:interface=127.0.0.1"
            document["dns"] = {"ipv4": ["127.0.0.1"]}
            self.assertNotIn("rate_limit", document["dns"])
            # pebble's VA fetches each of the 7 challenges from its 3 vantage points at
            # once, all from 127.0.0.1: 21 connections, over port 80's default 16 per
            # address (a real CA's vantage points have addresses of their own). This
            # test is about the DNS limits, so port 80's is raised.
            document.setdefault("limits", {})["connections"] = {"per_ip": {"http": 64}}

        running = await self._start_rail(configure)
        self.assertEqual(running.config.dns.rate_limit.responses_per_second, 20)
        leaf = await self._wait_for_pebble_leaf(running)
        self.assertEqual(leaf.issuer, self.intermediate.subject)
        self.assertEqual(certificate_names(leaf), MANY_NAMES)
        self.assertNotIn(b"ACME order for", running.server.output)
