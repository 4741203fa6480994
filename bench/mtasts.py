"""MTA-STS cost benchmark: delivery throughput with MTA-STS on (policy cached) vs off.

Run by hand (never by the test suite); bench/README.md has the usage. Everything is on
loopback: this process serves DNS for ``d0.bench`` ... ``dM.bench`` (MX ``mx.bench`` at
127.0.0.1, an ``_mta-sts`` TXT record, ``mta-sts.dI.bench``) and each domain's ``enforce``
policy over HTTPS, under a test CA handed to Rail with ``delivery.mta_sts.ca_file``. A
child process is the MX: a Twisted ESMTP server with STARTTLS (a certificate for
``mx.bench`` from that CA) that accepts and discards.

Rail's delivery runs in this process as ``build_delivery`` wires it (transport, scheduler
on the real reactor, an in-memory queue, no DKIM signing so the figure is about routing
and TLS). Rounds alternate, ``off`` then ``on``: ``off`` delivers with
``delivery.mta_sts.enabled: false`` (opportunistic STARTTLS, unverified), ``on`` with
MTA-STS after one warm-up message per domain, so every timed delivery finds its policy
cached and verifies the MX certificate and name. Prints msg/s per round and the medians.

    python bench/mtasts.py --messages 5000 --domains 20 --rounds 3
    python bench/mtasts.py --messages 200 --domains 4 --rounds 1      # smoke run
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from OpenSSL import crypto
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import CertificateOptions
from twisted.names import dns
from twisted.web.resource import Resource
from twisted.web.server import Site

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.config import parse_config
from rail.delivery.bounces import dsn_builder
from rail.delivery.decide import RetryPolicy
from rail.delivery.resolve import make_resolver
from rail.delivery.scheduler import DeliveryLimits, Scheduler
from rail.delivery.tlsreport import DISCARD
from rail.delivery.transport import build_transport
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.store.model import NewMessage
from rail.testing import MemoryStore
from tests.support.dnsserver import start_dns, txt_record

_SINK = r"""
import sys
from twisted.internet import reactor, ssl, defer
from twisted.mail import smtp
from zope.interface import implementer

cert, key, port_file = sys.argv[1:4]

@implementer(smtp.IMessage)
class Discard:
    def lineReceived(self, line): pass
    def eomReceived(self): return defer.succeed(None)
    def connectionLost(self): pass

@implementer(smtp.IMessageDelivery)
class Delivery:
    def receivedHeader(self, helo, origin, recipients): return None
    def validateFrom(self, helo, origin): return origin
    def validateTo(self, user): return Discard

class Factory(smtp.SMTPFactory):
    protocol = smtp.ESMTP
    def buildProtocol(self, addr):
        p = smtp.ESMTP(contextFactory=context)
        p.delivery = Delivery()
        p.factory = self
        p.host = b"mx.bench"
        return p

pem = open(cert).read() + open(key).read()
context = ssl.PrivateCertificate.loadPEM(pem).options()
port = reactor.listenTCP(0, Factory(), interface="127.0.0.1", backlog=200)
open(port_file, "w").write(str(port.getHost().port))
reactor.run()
"""


def _message(index: int, domain: str) -> bytes:
    head = (
        f"From: App <app@rail.test>\r\nTo: <user{index}@{domain}>\r\n"
        f"Subject: bench {index}\r\nMessage-ID: <bench{index}@rail.test>\r\n\r\n"
    )
    return (head + "The quick brown fox jumps over the lazy dog.\r\n" * 40).encode()


class _Policy(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.fetches = 0

    def render_GET(self, request: Any) -> bytes:
        self.fetches += 1
        request.setHeader(b"content-type", b"text/plain")
        return b"version: STSv1\r\nmode: enforce\r\nmx: mx.bench\r\nmax_age: 86400\r\n"


class _PolicyServer:
    """HTTPS for every ``mta-sts.<domain>`` (one certificate naming them all)."""

    def __init__(self, reactor: Any, ca: Any, domains: list[str]) -> None:
        key = generate_private_key("ecdsa-p256")
        names = tuple(f"mta-sts.{d}" for d in domains)
        cert = issue_server_certificate(
            ca.ca, names[0], names[1:], key.public_key(), datetime.now(UTC)
        )
        options = CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
            certificate=crypto.X509.from_cryptography(cert),
        )
        self.resource = _Policy()
        self.listening = reactor.listenSSL(0, Site(self.resource), options, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    @property
    def fetches(self) -> int:
        return self.resource.fetches

    def stop(self) -> Any:
        return self.listening.stopListening()


class _Observer:
    """Counts recorded attempts; any that is not ``sent`` ends the benchmark."""

    def __init__(self) -> None:
        self.done = 0
        self._target = 0
        self._waiting: Deferred[None] | None = None

    def attempt(self, job: Any, result: Any, seconds: float) -> None:
        for update in result.updates:
            if update.status != "sent":
                raise SystemExit(f"{job.message_id} not sent: {update.reply}")
        self.done += 1
        if self._waiting is not None and self.done >= self._target:
            waiting, self._waiting = self._waiting, None
            waiting.callback(None)

    def connection(self, domain: str, tls: bool) -> None:
        pass

    def until(self, target: int) -> Deferred[None]:
        self._target = target
        self._waiting = Deferred()
        if self.done >= target:
            self._waiting, waiting = None, self._waiting
            waiting.callback(None)
            return waiting
        return self._waiting


class _Round:
    """One delivery run; see the module docstring."""

    def __init__(self, reactor: Any, directory: Path, delivery: dict[str, Any]) -> None:
        config = parse_config(
            {
                "hostname": "rail.test",
                "tls": {"self_signed": True},
                "data_dir": str(directory / "data"),
                "delivery": delivery,
            },
            directory,
        )
        self.store = MemoryStore(reactor)
        self.observer = _Observer()
        resolver = make_resolver(config.delivery.nameservers, reactor)
        self.transport = build_transport(config, reactor, resolver, random.Random(1), DISCARD)
        self.scheduler = Scheduler(
            self.store,
            reactor,
            route=self.transport.route,
            connect=self.transport.connector(reactor, "rail.test", 10),
            prepare=lambda job: succeed(job.data),
            dsn=dsn_builder("rail.test", reactor.seconds),
            policy=RetryPolicy(schedule=(600.0,), max_age=3600.0),
            limits=DeliveryLimits(
                concurrency=config.delivery.concurrency,
                per_destination=config.delivery.per_destination,
                messages_per_connection=config.delivery.messages_per_connection,
            ),
            rng=random.Random(2),
            observer=self.observer,
        )
        self.count = 0

    def queue(self, domains: list[str], messages: int, now: float) -> list[str]:
        ids = []
        for index in range(messages):
            domain = domains[index % len(domains)]
            self.count += 1
            message_id = f"M{self.count:07d}"
            self.store.accept(
                NewMessage(
                    id=message_id,
                    client="app",
                    sender="app@rail.test",
                    recipients=(f"user{index}@{domain}",),
                    data=_message(index, domain),
                    channel="api",
                    received_at=now,
                )
            )
            ids.append(message_id)
        return ids

    async def wait(self, ids: list[str]) -> None:
        """Until every message of ``ids`` has an attempt (each must be sent)."""
        await self.observer.until(self.observer.done + len(ids))

    async def stop(self) -> None:
        await self.scheduler.stop(5)
        if self.transport.policies is not None:
            await self.transport.policies.stop()


async def _main(reactor: Any, options: argparse.Namespace) -> None:
    from tests.interop.outbound import TestCA

    directory = Path(tempfile.mkdtemp(prefix="rail-bench-sts-"))
    ca = TestCA.create(directory / "ca")
    cert, key = ca.issue("mx.bench")
    port_file = directory / "sink.port"
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(cert), str(key), str(port_file)])
    try:
        for _ in range(200):
            if port_file.exists() and port_file.read_text():
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        smtp_port = int(port_file.read_text())
        domains = [f"d{i}.bench" for i in range(options.domains)]
        policy_server = _PolicyServer(reactor, ca, domains)
        records: dict[str, list[Any]] = {"mx.bench": [dns.Record_A("127.0.0.1", ttl=3600)]}
        for domain in domains:
            records[domain] = [dns.Record_MX(10, b"mx.bench", ttl=3600)]
            records[f"_mta-sts.{domain}"] = [txt_record("v=STSv1; id=bench1", ttl=3600)]
            records[f"mta-sts.{domain}"] = [dns.Record_A("127.0.0.1", ttl=3600)]
        dns_server = await start_dns(reactor, records)
        base = {
            "hold": False,
            "nameservers": [f"127.0.0.1:{dns_server.port}"],
            "port": smtp_port,
            "per_destination": options.per_destination,
            "concurrency": options.concurrency,
        }
        figures: dict[str, list[float]] = {"off": [], "on": []}
        for number in range(options.rounds):
            for mode in ("off", "on"):
                sts = {
                    "enabled": mode == "on",
                    "ca_file": str(ca.ca_file),
                    "port": policy_server.port,
                    "allow_private": True,
                }
                run = _Round(reactor, directory / f"{mode}{number}", {**base, "mta_sts": sts})
                run.scheduler.start()
                if mode == "on":  # warm the cache: one message per domain, not timed
                    await run.wait(run.queue(domains, len(domains), reactor.seconds()))
                started = time.perf_counter()
                await run.wait(run.queue(domains, options.messages, reactor.seconds()))
                elapsed = time.perf_counter() - started
                await run.stop()
                rate = options.messages / elapsed
                figures[mode].append(rate)
                print(
                    f"round {number + 1} {mode:>3}: {options.messages} messages"
                    + f" in {elapsed:.2f} s = {rate:.0f} msg/s",
                    flush=True,
                )
        off, on = statistics.median(figures["off"]), statistics.median(figures["on"])
        print(
            f"median off {off:.0f} msg/s, on (policy cached) {on:.0f} msg/s, on/off {on / off:.2f}"
        )
        print(f"policy fetches: {policy_server.fetches} (one per domain per 'on' round)")
        await dns_server.stop()
        await policy_server.stop()
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="timed messages per round")
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--per-destination", type=int, default=10)
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(_main(reactor, options)))


if __name__ == "__main__":
    main()
