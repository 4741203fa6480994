"""Inbound authentication benchmark: SPF + DKIM + DMARC verifications per second; prints
figures.

Run by hand (never by the test suite). The inbound target is 1,000 messages/s end to
end on 2 cores. Two messages, each from a domain with SPF and DMARC records served by a
loopback DNS server (tests/support/dnsserver.py), cache warm:

- ``unsigned``: SPF pass, no DKIM-Signature, DMARC pass by SPF;
- ``signed``: Rail's own two signatures (rsa-sha256 + ed25519-sha256), all pass.

End to end is :meth:`rail.inbound.verifier.Verifier.verify` with ``--concurrency``
checks in flight on a pool of ``--threads`` threads. The breakdown then times each step
in this thread, one at a time, with the lookup answering from its warm cache, plus the
cost of the hop to a worker thread and back: where the time goes.

    .venv/bin/python bench/verify.py
    .venv/bin/python bench/verify.py --messages 5000 --concurrency 16 --threads 2
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/dkim.py has the dkimpy package's name, and running this puts bench/ first on sys.path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.names import client
from twisted.python.threadpool import ThreadPool

from rail.dkim.keys import KeyStore
from rail.dkim.records import record_name, txt_strings, txt_value
from rail.dkim.sign import sign
from rail.inbound.dkimverify import verify_dkim
from rail.inbound.dmarc import author_domain, discover, evaluate
from rail.inbound.lookup import ThreadedLookup
from rail.inbound.results import authentication_results
from rail.inbound.spfcheck import check_spf
from rail.inbound.verifier import Verifier
from tests.support.dnsserver import start_dns, txt_record

DOMAIN = "example.test"
PEER = "192.0.2.10"


def _message() -> bytes:
    header = (
        f"From: Shop <news@{DOMAIN}>\r\n"
        "To: someone@rail.test\r\n"
        "Subject: Your order 12345 has shipped\r\n"
        "Date: Sat, 21 Nov 2026 04:07:13 +0000\r\n"
        f"Message-ID: <01JDB3ZK4T8F6M5N9Q2R7S1V0W@{DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode()
    line = b"Thank you for your order. It left our warehouse today and is on its way.\r\n"
    return header + line * 25  # about 2 KB


async def _end_to_end(
    reactor: Any, verifier: Verifier, data: bytes, messages: int, concurrency: int
) -> float:
    await verifier.verify(PEER, "mx.example.test", f"bounce@{DOMAIN}", data)  # warm
    remaining = messages

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            auth = await verifier.verify(PEER, "mx.example.test", f"bounce@{DOMAIN}", data)
            assert auth.dmarc == "pass", auth

    started = time.perf_counter()
    await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)])
    return messages / (time.perf_counter() - started)


def _per_call(function: Callable[[], object], iterations: int) -> float:
    """Median microseconds per call over 5 rounds."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(iterations):
            function()
        rounds.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(rounds)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    now = time.time()
    store = KeyStore.open(Path(tempfile.mkdtemp(prefix="rail-bench-")) / "dkim")
    store.ensure([DOMAIN], now)
    keys = store.signing_keys(DOMAIN, now)
    assert keys is not None
    records: dict[str, list[Any]] = {
        DOMAIN: [txt_record(f"v=spf1 ip4:198.51.100.0/24 ip4:{PEER} -all", ttl=3600)],
        f"_dmarc.{DOMAIN}": [txt_record("v=DMARC1; p=reject", ttl=3600)],
    }
    for selector, public in (
        (keys.rsa_selector, keys.rsa_key.public_key()),
        (keys.ed25519_selector, keys.ed25519_key.public_key()),
    ):
        value = "".join(txt_strings(txt_value(public)))
        records[record_name(selector, DOMAIN)] = [txt_record(value, ttl=3600)]
    server = await start_dns(reactor, records)
    resolver = client.Resolver(servers=server.nameservers, timeout=(2,), reactor=reactor)
    pool = ThreadPool(minthreads=args.threads, maxthreads=args.threads, name="bench-verify")
    pool.start()
    try:
        unsigned = _message()
        signed = sign(unsigned, keys, now) + unsigned
        verifier = Verifier(reactor, resolver, pool, rng=random.Random(0))
        print(
            f"end to end, {args.messages} messages, {args.concurrency} in flight, "
            f"{args.threads} threads:"
        )
        for name, data in (("unsigned", unsigned), ("signed", signed)):
            rate = await _end_to_end(reactor, verifier, data, args.messages, args.concurrency)
            print(f"  {name:9} {rate:8.0f} verifications/s")
        print(f"  DNS queries sent: {verifier.lookup.queries} (all cache misses)")

        lookup = ThreadedLookup(reactor, resolver)
        await deferToThreadPool(reactor, pool, verify_dkim, lookup, signed)  # warm
        await deferToThreadPool(reactor, pool, discover, lookup, DOMAIN)
        await deferToThreadPool(reactor, pool, check_spf, lookup, PEER, "mx", f"bounce@{DOMAIN}")
        # Steps timed in a worker thread (lookups must not run on the reactor thread),
        # one at a time, each answered from the warm cache.
        found = await deferToThreadPool(reactor, pool, discover, lookup, DOMAIN)
        auth = await verifier.verify(PEER, "mx", f"bounce@{DOMAIN}", signed)
        rng = random.Random(0)
        n = args.iterations
        steps: list[tuple[str, Callable[[], object]]] = [
            ("SPF check (pyspf)", lambda: check_spf(lookup, PEER, "mx", f"bounce@{DOMAIN}")),
            ("DKIM, 2 signatures (dkimpy)", lambda: verify_dkim(lookup, signed)),
            ("DKIM, unsigned message", lambda: verify_dkim(lookup, unsigned)),
            ("From domain", lambda: author_domain(signed)),
            ("DMARC discovery", lambda: discover(lookup, DOMAIN)),
            (
                "DMARC evaluation",
                lambda: evaluate(DOMAIN, found, "pass", DOMAIN, auth.dkim, rng),
            ),
            ("Authentication-Results", lambda: authentication_results("mx.rail.test", auth)),
        ]
        print(f"\nbreakdown (median us per call, {n} calls x 5, one worker thread):")
        for label, step in steps:
            us = await deferToThreadPool(reactor, pool, _per_call, step, n)
            print(f"  {label:32} {us:8.1f}")
        hops = max(n, 1000)
        started = time.perf_counter()
        for _ in range(hops):
            await deferToThreadPool(reactor, pool, lambda: None)
        hop = (time.perf_counter() - started) / hops * 1e6
        print(f"  {'thread hop (deferToThreadPool)':32} {hop:8.1f}")
    finally:
        pool.stop()
        for protocol in list(resolver.connections):
            protocol.transport.loseConnection()
        await server.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=300)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
