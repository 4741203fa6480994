"""What the authentication tests share: a loopback DNS server answering through
twisted.names, a worker thread pool, Rail-made DKIM keys, and messages to check.

Lookups are synchronous and refuse to run on the reactor thread, so tests call them in
a real worker thread (:func:`in_thread`) while the real reactor answers the queries.
The resolver gives up after one second, so a silent server costs that much wall time.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.names import client, dns
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from rail.dkim.keys import KeyStore
from rail.dkim.records import record_name, txt_value
from rail.dkim.sign import DomainKeys, sign
from rail.inbound.lookup import ThreadedLookup
from tests.support.dnsserver import RunningDNS, start_dns, txt_record

__all__ = [
    "PEER",
    "DNSFixture",
    "in_thread",
    "key_records",
    "message",
    "rail_keys",
    "signed",
    "start",
    "txt",
]

T = TypeVar("T")
PEER = "192.0.2.10"
TTL = 300


def txt(text: str) -> dns.Record_TXT:
    return txt_record(text, ttl=TTL)


def message(from_header: str = "Shop <news@example.test>", body: bytes = b"Hello.\r\n") -> bytes:
    return (
        (
            f"From: {from_header}\r\n"
            "To: someone@rail.test\r\n"
            "Subject: Your order\r\n"
            "Date: Sat, 21 Nov 2026 04:28:20 +0000\r\n"
            "Message-ID: <1@example.test>\r\n"
        ).encode()
        + b"\r\n"
        + body
    )


@functools.cache
def rail_keys(domain: str) -> DomainKeys:
    """Keys made the way Rail makes them (KeyStore in a temporary directory)."""
    now = time.time()
    store = KeyStore.open(Path(tempfile.mkdtemp(prefix="rail-inbound-")) / "dkim")
    store.ensure([domain], now)
    keys = store.signing_keys(domain, now)
    assert keys is not None
    return keys


def key_records(keys: DomainKeys) -> dict[str, list[Any]]:
    """The TXT records Rail publishes for ``keys``, by owner name."""
    return {
        record_name(keys.ed25519_selector, keys.domain): [
            txt(txt_value(keys.ed25519_key.public_key()))
        ],
        record_name(keys.rsa_selector, keys.domain): [txt(txt_value(keys.rsa_key.public_key()))],
    }


def signed(data: bytes, keys: DomainKeys) -> bytes:
    """``data`` with Rail's two signatures (rsa-sha256 then ed25519-sha256) in front."""
    return sign(data, keys, time.time()) + data


class DNSFixture:
    """A started server, a resolver asking it, and a lookup over that resolver."""

    def __init__(self, server: RunningDNS, resolver: client.Resolver, pool: ThreadPool) -> None:
        self.server = server
        self.resolver = resolver
        self.pool = pool
        self.lookup = ThreadedLookup(reactor, resolver)

    def run(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        return in_thread(self.pool, function, *args)


async def start(
    case: TestCase,
    records: Mapping[str, Sequence[Any]],
    *,
    servfail: Collection[str] = (),
    silent: Collection[str] = (),
) -> DNSFixture:
    """Serve ``records``; everything started is stopped when ``case`` ends."""
    server = await start_dns(reactor, records, servfail=servfail, silent=silent)
    case.addCleanup(server.stop)
    resolver = client.Resolver(servers=server.nameservers, timeout=(1,), reactor=reactor)

    def close_tcp() -> None:
        for protocol in list(resolver.connections):
            protocol.transport.loseConnection()

    case.addCleanup(close_tcp)
    pool = ThreadPool(minthreads=1, maxthreads=4, name="inbound-tests")
    pool.start()
    case.addCleanup(pool.stop)
    return DNSFixture(server, resolver, pool)


def in_thread(pool: ThreadPool, function: Callable[..., T], *args: Any) -> Deferred[T]:
    result: Deferred[T] = deferToThreadPool(reactor, pool, function, *args)
    return result
