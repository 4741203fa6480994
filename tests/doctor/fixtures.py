"""A world for ``rail doctor`` on loopback: the DNS a resolver would answer, and servers
standing in for Rail's public ports 25, 465 and 443.

Everything starts out right: the DNS fixture (:mod:`tests.support.dnsserver`) serves the
zone Rail would publish for ``example.test`` (converted from :mod:`rail.dns.zone`'s
records), a PTR of the public address (127.0.0.1 unless a test gives another, which the
probes are then told to reach at 127.0.0.1) to ``mail.example.test``, and the servers answer with
Rail's current certificate (ACME mode, from a test CA the probes are told to trust) and
Rail's MTA-STS policy. Tests then break one thing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.names import dns
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from rail.acme.storage import save_acme_material
from rail.config import Config, parse_config
from rail.dkim.keys import KeyStore
from rail.dns.mtasts import policy_text
from rail.dns.records import AAAA, CAA, MX, NS, TXT, A, Record
from rail.dns.sources import load_zones
from rail.doctor.inputs import Inputs, load_inputs
from rail.doctor.probe import Overrides
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.pki.tls import ServerMaterial, server_options
from rail.web.mtasts import MTASTSPolicy
from tests.support.dnsserver import RunningDNS, start_dns, txt_record

__all__ = ["DOMAIN", "HOSTNAME", "World", "make_world"]

DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
CA_IDENTITY = "ca.example.test"
TTL = 60


class CAARecord(dns.UnknownRecord):
    """A CAA record for the fixture (twisted.names has no CAA type of its own)."""

    TYPE = 257  # type: ignore[assignment]


def caa_record(flags: int, tag: str, value: str) -> CAARecord:
    raw = bytes([flags, len(tag)]) + tag.encode("ascii") + value.encode("ascii")
    return CAARecord(raw, ttl=TTL)


def _fixture_record(record: Record) -> Any:
    data = record.data
    if isinstance(data, A):
        return dns.Record_A(data.address, ttl=TTL)
    if isinstance(data, AAAA):
        return dns.Record_AAAA(data.address, ttl=TTL)
    if isinstance(data, MX):
        return dns.Record_MX(data.preference, data.exchange.encode("ascii"), ttl=TTL)
    if isinstance(data, NS):
        return dns.Record_NS(data.target.encode("ascii"), ttl=TTL)
    if isinstance(data, TXT):
        return txt_record("".join(data.strings), TTL)
    if isinstance(data, CAA):
        return caa_record(data.flags, data.tag, data.value)
    return None  # the SOA: the fixture has its own


def fixture_records(records: Sequence[Record]) -> dict[str, list[Any]]:
    """Rail's records as the loopback DNS fixture's, by name."""
    out: dict[str, list[Any]] = {}
    for record in records:
        converted = _fixture_record(record)
        if converted is not None:
            out.setdefault(record.name, []).append(converted)
    return out


class _Greeting(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(f"220 {HOSTNAME} ESMTP\r\n".encode())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if b"QUIT" in data:
            self.transport.write(b"221 2.0.0 Bye\r\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


class _Tracking(WrappingFactory):
    """Keeps the server's connections so a test can close them and wait until gone."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._empty: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._empty = self._empty, []
            for d in waiting:
                d.callback(None)

    async def close(self) -> None:
        if not self.protocols:
            return
        d: Deferred[None] = Deferred()
        self._empty.append(d)
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        await d


def policy_site(policy: str | None) -> Site:
    """A site serving ``policy`` at ``/.well-known/mta-sts.txt`` (a 404 when None)."""
    root = Resource()
    well_known = Resource()
    root.putChild(b".well-known", well_known)
    if policy is not None:
        well_known.putChild(b"mta-sts.txt", MTASTSPolicy(policy))
    return Site(root)


@attrs.define
class World:
    """The running fixture and what the doctor needs to look at it."""

    reactor: Any
    raw: dict[str, object]
    """The configuration as a YAML file would hold it."""
    config: Config
    ca: CertificateAuthority
    material: ServerMaterial
    dns: RunningDNS
    ports: dict[int, int] = attrs.Factory(dict)
    _records: dict[str, list[Any]] = attrs.Factory(dict)
    _listening: dict[int, Any] = attrs.Factory(dict)
    _factories: dict[int, _Tracking] = attrs.Factory(dict)

    def records(self, name: str) -> list[Any]:
        """What the DNS fixture serves at ``name``."""
        return list(self._records.get(name, []))

    def set_records(self, name: str, records: Sequence[Any]) -> None:
        """Serve ``records`` at ``name`` from now on (none: NXDOMAIN)."""
        self._records[name] = list(records)
        self.dns.set_records(name, records)

    def replace(self, name: str, rtype: int, records: Sequence[Any]) -> None:
        """Serve ``records`` instead of those of type ``rtype`` at ``name``."""
        kept = [r for r in self.records(name) if r.TYPE != rtype]
        self.set_records(name, [*kept, *records])

    @property
    def policy(self) -> str:
        d = self.config.dns
        return policy_text(d.mta_sts_mode, self.config.hostname, d.mta_sts_max_age)

    def inputs(self, now: datetime | None = None) -> Inputs:
        inputs = load_inputs(
            self.config, datetime.now(UTC).timestamp(), trust=[self.ca.certificate]
        )
        return inputs if now is None else attrs.evolve(inputs, now=now)

    @property
    def overrides(self) -> Overrides:
        addresses = {a: "127.0.0.1" for a in self.config.dns.ipv4}
        return Overrides(addresses=addresses, ports=dict(self.ports), trust=[self.ca.certificate])

    def serve(
        self, port: int, factory: Any, tls: bool, material: ServerMaterial | None = None
    ) -> None:
        """Play Rail's public ``port`` with ``factory`` on a free loopback port (TLS with
        Rail's certificate, or ``material``)."""
        tracking = _Tracking(factory)
        if tls:
            options = server_options(material or self.material, None)
            listening = self.reactor.listenSSL(0, tracking, options, interface="127.0.0.1")
        else:
            listening = self.reactor.listenTCP(0, tracking, interface="127.0.0.1")
        self._listening[port] = listening
        self._factories[port] = tracking
        self.ports[port] = listening.getHost().port

    def serve_acme_directory(self, document: bytes, directory: Path) -> None:
        """Serve ``document`` as the ACME directory at ``https://127.0.0.1:PORT/dir``
        (a certificate for 127.0.0.1 from the test CA, which ``tls.acme.ca_file`` names)
        and point the configuration at it."""
        key = generate_private_key("ecdsa-p256")
        now = datetime.now(UTC)
        leaf = issue_server_certificate(self.ca, "localhost", ("127.0.0.1",), key.public_key(), now)
        root = Resource()
        root.putChild(b"dir", Data(document, "application/json"))
        self.serve(0, Site(root), tls=True, material=ServerMaterial(chain=(leaf,), key=key))
        ca_file = directory / "acme-ca.pem"
        ca_file.write_bytes(self.ca.certificate.public_bytes(Encoding.PEM))
        acme = self.config.tls.acme
        assert acme is not None
        url = f"https://127.0.0.1:{self.ports[0]}/dir"
        tls = attrs.evolve(self.config.tls, acme=attrs.evolve(acme, directory=url, ca_file=ca_file))
        self.config = attrs.evolve(self.config, tls=tls)

    async def close(self, port: int) -> None:
        """Stop playing ``port``: connections to it are refused from now on."""
        listening = self._listening.pop(port)
        await maybeDeferred(listening.stopListening)
        await self._factories.pop(port).close()

    async def stop(self) -> None:
        for port in list(self._listening):
            await self.close(port)


async def make_world(
    reactor: Any, directory: Path, address: str = "127.0.0.1", **dns_config: object
) -> World:
    """Rail's configuration, keys and certificate under ``directory``, the DNS fixture
    serving its zone, and its three ports served; call :meth:`World.stop` and the DNS
    fixture's ``stop`` when done."""
    raw: dict[str, object] = {
        "hostname": HOSTNAME,
        "data_dir": str(directory),
        "local_domains": [DOMAIN],
        "tls": {"acme": {"directory": "https://127.0.0.1:14000/dir"}},
        "dns": {
            "ipv4": [address],
            "tls_rpt": f"mailto:tls-reports@{DOMAIN}",
            "caa": [CA_IDENTITY],
            **dns_config,
        },
    }
    config = parse_config(raw, directory)
    now = datetime.now(UTC)
    ca = create_ca("Doctor test CA", now, "ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    leaf = issue_server_certificate(ca, HOSTNAME, (f"mta-sts.{DOMAIN}",), key.public_key(), now)
    material = ServerMaterial(chain=(leaf,), key=key)
    save_acme_material(directory, material)
    KeyStore.open(directory / "dkim").ensure([DOMAIN, HOSTNAME], now.timestamp())
    world_dns = await start_dns(reactor, {})
    world = World(reactor, raw, config, ca, material, world_dns)
    keys = KeyStore.open(directory / "dkim")
    zones = load_zones(config, keys, now.timestamp(), save_serials=False)
    for name, records in fixture_records([r for z in zones for r in z.records]).items():
        world.set_records(name, records)
    reverse = ipaddress.ip_address(address).reverse_pointer
    world.set_records(reverse, [dns.Record_PTR(HOSTNAME.encode(), ttl=TTL)])
    world.serve(25, Factory.forProtocol(_Greeting), tls=False)
    world.serve(465, Factory.forProtocol(Protocol), tls=True)
    world.serve(443, policy_site(world.policy), tls=True)
    return world
