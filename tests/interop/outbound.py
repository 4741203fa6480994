"""What the outbound TLS interop tests share: a test CA and its certificates as PEM files,
an HTTPS server for MTA-STS policies, and Rail's delivery wired in-process.

Delivery runs as :func:`rail.delivery.service.build_delivery` wires it (the configuration
parsed by :func:`rail.config.parse_config`, :func:`rail.delivery.transport.build_transport`
for routes, TLS and MTA-STS) with the real scheduler and DKIM signer; only the queue is a
:class:`~rail.testing.MemoryStore` and the scheduler's retries run on a
:class:`~twisted.internet.task.Clock`, so a test sees each recipient's recorded state and
every TLS outcome (the sink) while sockets, DNS and HTTPS run on the real reactor.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from rail.config import parse_config
from rail.delivery.bounces import dsn_builder
from rail.delivery.decide import RetryPolicy
from rail.delivery.preparing import inline
from rail.delivery.resolve import make_resolver
from rail.delivery.scheduler import DeliveryLimits, Scheduler
from rail.delivery.signing import Signer
from rail.delivery.tlsreport import TLSOutcome
from rail.delivery.transport import Transport, build_transport
from rail.dkim.keys import KeyStore
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.store.model import NewMessage, RecipientStatus
from rail.testing import MemoryStore

__all__ = [
    "HOSTNAME",
    "SENDER",
    "Delivery",
    "PolicyServer",
    "RecordingSink",
    "TestCA",
    "wait_until",
]

HOSTNAME = "rail.test"
SENDER = "app@rail.test"
_T0 = 1_800_000_000.0
_WAIT = 30.0


async def wait_until(check: Any, what: str, timeout: float = _WAIT) -> Any:
    """Poll ``check()`` every 0.1 s of real time until it returns something true."""
    for _ in range(int(timeout * 10)):
        result = check()
        if result:
            return result
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RecordingSink:
    """A TLS outcome sink that keeps every outcome."""

    def __init__(self) -> None:
        self.outcomes: list[TLSOutcome] = []

    def record(self, outcome: TLSOutcome) -> None:
        self.outcomes.append(outcome)


@attrs.define
class TestCA:
    """A CA whose certificate is ``ca_file``; issues server certificates as PEM files."""

    directory: Path
    ca: CertificateAuthority
    _count: int = 0

    @classmethod
    def create(cls, directory: Path, name: str = "Outbound TLS test CA") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        test_ca = cls(directory, create_ca(name, datetime.now(UTC), "ecdsa-p256"))
        pem = test_ca.ca.certificate.public_bytes(serialization.Encoding.PEM)
        test_ca.ca_file.write_bytes(pem)
        return test_ca

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def issue(self, name: str, *, expired: bool = False) -> tuple[Path, Path]:
        """A certificate for ``name`` (chain file, key file), valid now unless
        ``expired``."""
        return self.issue_options(name, expired=expired)[0]

    def issue_options(
        self, name: str, *, expired: bool = False
    ) -> tuple[tuple[Path, Path], CertificateOptions]:
        """:meth:`issue`, and server TLS options with that certificate."""
        key = generate_private_key("ecdsa-p256")
        now = datetime.now(UTC) - (timedelta(days=10) if expired else timedelta(0))
        validity = timedelta(days=1) if expired else timedelta(days=30)
        cert = issue_server_certificate(self.ca, name, (), key.public_key(), now, validity)
        self._count += 1
        chain = self.directory / f"{name}.{self._count}.crt"
        private = self.directory / f"{name}.{self._count}.key"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self.ca.certificate.public_bytes(serialization.Encoding.PEM)
        )
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        private.chmod(0o600)
        chain.chmod(0o644)
        options = CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
            certificate=crypto.X509.from_cryptography(cert),
        )
        return (chain, private), options


class _Policy(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.code = 200
        self.content_type = b"text/plain; charset=utf-8"
        self.location: bytes | None = None
        self.requests: list[str] = []

    def render_GET(self, request: Request) -> bytes:
        self.requests.append(request.uri.decode())
        if request.uri != b"/.well-known/mta-sts.txt":
            request.setResponseCode(404)
            return b""
        request.setResponseCode(self.code)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        request.setHeader(b"content-type", self.content_type)
        return self.text.encode()


class PolicyServer:
    """HTTPS on 127.0.0.1 with a certificate for ``mta-sts.<domain>``, serving ``text``."""

    def __init__(self, case: TestCase, test_ca: TestCA, domain: str) -> None:
        _, options = test_ca.issue_options(f"mta-sts.{domain}")
        self.resource = _Policy()
        self.port: Any = reactor.listenSSL(0, Site(self.resource), options, interface="127.0.0.1")
        case.addCleanup(self.port.stopListening)

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)

    @property
    def requests(self) -> list[str]:
        return self.resource.requests

    def serve(
        self,
        text: str,
        *,
        code: int = 200,
        content_type: bytes = b"text/plain; charset=utf-8",
        location: bytes | None = None,
    ) -> None:
        """Answer the policy URL with ``text`` (and this status and headers)."""
        self.resource.text = text
        self.resource.code = code
        self.resource.content_type = content_type
        self.resource.location = location


class Delivery:
    """Rail's outbound delivery in-process; see the module docstring."""

    def __init__(self, case: TestCase, delivery: dict[str, Any]) -> None:
        self.case = case
        directory = Path(case.mktemp()).resolve()
        directory.mkdir(parents=True)
        self.config = parse_config(
            {
                "hostname": HOSTNAME,
                "tls": {"self_signed": True},
                "data_dir": str(directory / "data"),
                "delivery": delivery,
            },
            directory,
        )
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = MemoryStore(self.clock)
        self.sink = RecordingSink()
        resolver = make_resolver(self.config.delivery.nameservers, reactor)
        self.transport: Transport = build_transport(
            self.config, reactor, resolver, random.Random(1), self.sink
        )
        keys = KeyStore.open(directory / "dkim")
        self.scheduler = Scheduler(
            self.store,
            self.clock,
            route=self.transport.route,
            connect=self.transport.connector(reactor, HOSTNAME, 10),
            prepare=inline(Signer(keys, self.clock).prepare),
            dsn=dsn_builder(HOSTNAME, self.clock.seconds),
            policy=RetryPolicy(schedule=(60.0,), max_age=3600.0),
            limits=DeliveryLimits(),
            rng=random.Random(2),
        )
        self.scheduler.start()
        case.addCleanup(self.stop)

    async def stop(self) -> None:
        stopped = self.scheduler.stop(0)
        self.clock.advance(0)
        await stopped
        if self.transport.policies is not None:
            await self.transport.policies.stop()

    def send(self, recipient: str, subject: str = "MTA-STS interop") -> str:
        """Queue a message to ``recipient``; the scheduler claims it at once."""
        message_id = f"M{len(self.store.messages):03d}"
        data = (
            f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}@rail.test>\r\n\r\nhello\r\n"
        ).encode()
        accepted: Deferred[Any] = self.store.accept(
            NewMessage(
                id=message_id,
                client="app",
                sender=SENDER,
                recipients=(recipient,),
                data=data,
                channel="api",
                received_at=self.clock.seconds(),
            )
        )
        self.case.successResultOf(accepted)
        return message_id

    def rows(self, message_id: str) -> list[RecipientStatus]:
        status = self.case.successResultOf(self.store.status("app", message_id))
        assert status is not None
        return list(status.recipients)

    async def attempted(self, message_id: str) -> RecipientStatus:
        """Wait until the message's one recipient has an attempt recorded."""
        [row] = await wait_until(
            lambda: [r for r in self.rows(message_id) if r.attempts >= 1],
            f"an attempt for {message_id}",
        )
        return row  # type: ignore[no-any-return]
