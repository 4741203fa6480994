"""Event benchmark: intake and delivery throughput with events on and off (interleaved), and
the latency of an event from the remote MX's reply to the application's 200.

Run by hand (never by the test suite); bench/README.md has the usage. Everything is on
loopback: a DNS server (this process, twisted.names) answers MX records for ``d0.bench``
... pointing at 127.0.0.1, where Postfix's ``smtp-sink`` accepts and discards, and a
twisted.web receiver in this process answers every event POST with 200 at once.

Each round, in a fresh ``rail init --dev`` directory, alternately with events off and on:

1. **Intake**: ``--messages`` 2 KB messages are accepted through Rail's own store (group
   commit, ``--window`` acceptances in flight), timed. With events on, client ``app`` is
   subscribed to every type, so each acceptance also writes its ``message.accepted``
   event in the same transaction.
2. **Delivery**: ``twistd rail`` starts with delivery on (with events on, ``rail clients
   events app --events all --events-url http://127.0.0.1:PORT/`` first) and the clock
   runs until no recipient is pending; then, with events on, until every event is final.
3. **Latency** (events on): for each ``message.delivered`` event, the receiver's arrival
   time minus the event's ``created_at`` in the queue (the moment the delivery result,
   the remote reply, was recorded): p50 and p99. The receiver answers at once, so the
   arrival is when the app's 200 is sent.

Events need the code that emits them (``rail/store/emit.py``) and ``rail clients events``;
without them the events-on rounds say that no event was POSTed.

    python bench/events.py --messages 20000 --rounds 3
    python bench/events.py --messages 500 --rounds 1          # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.names import dns
from twisted.web import resource, server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.store.sqlite import SQLiteStore
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import start_smtp_sink

_BIN = Path(sys.executable).parent


class _Receiver(resource.Resource):
    """Records each event's id and arrival time, answers 200 at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self.types: dict[str, int] = {}

    def render_POST(self, request: Any) -> bytes:
        arrived = time.time()
        event = json.loads(request.content.read())
        self.arrivals.setdefault(event["id"], arrived)
        self.types[event["type"]] = self.types.get(event["type"], 0) + 1
        return b""


def _message(index: int, domain: str, size: int) -> bytes:
    head = (
        f"From: App <app@rail.test>\r\nTo: <user{index}@{domain}>\r\n"
        f"Subject: bench {index}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench{index}@rail.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


async def _intake(reactor: Any, queue: Path, args: argparse.Namespace, events: bool) -> float:
    """Accept ``args.messages`` through the store; seconds taken."""
    store = SQLiteStore.open(queue, reactor, max_queued=10_000_000, min_free_bytes=0)
    store.start()
    if events:
        store.subscriptions = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
    messages = []
    now = time.time()
    for index in range(args.messages):
        domain = f"d{index % args.domains}.bench"
        messages.append(
            NewMessage(
                id=new_message_id(now),
                client="app",
                sender="app@rail.test",
                recipients=(f"user{index}@{domain}",),
                data=_message(index, domain, args.size),
                channel="api",
                received_at=now,
            )
        )
    started = time.monotonic()
    window: list[Deferred[object]] = []
    for message in messages:
        window.append(store.accept(message))
        if len(window) >= args.window:
            await defer.gatherResults(window)
            window = []
    await defer.gatherResults(window)
    elapsed = time.monotonic() - started
    await store.close()
    return elapsed


def _count(queue: Path, sql: str) -> int:
    connection = sqlite3.connect(f"file:{queue}/queue.sqlite3?mode=ro", uri=True)
    try:
        return int(connection.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # no events table: a Rail without events
    finally:
        connection.close()


def _created(queue: Path) -> dict[str, float]:
    connection = sqlite3.connect(f"file:{queue}/queue.sqlite3?mode=ro", uri=True)
    try:
        return dict(
            connection.execute(
                "SELECT id, created_at FROM events WHERE type = 'message.delivered'"
            ).fetchall()
        )
    finally:
        connection.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.5) - 1))]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(
    reactor: Any,
    args: argparse.Namespace,
    events: bool,
    dns_port: int,
    sink_port: int,
    receiver: _Receiver,
    receiver_port: int,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="rail-bench-events-")) / "rail"
    subprocess.run(
        [str(_BIN / "rail"), "init", "--dev", str(workdir), "--https-port", "18443"],
        check=True,
        capture_output=True,
    )
    config_path = workdir / "rail.yaml"
    config = yaml.safe_load(config_path.read_text())
    queue = workdir / "data" / "queue"
    intake = await _intake(reactor, queue, args, events)
    config["listen"] = {"https": "tcp:0", "submission": None}
    config["delivery"].update(
        hold=False,
        nameservers=[f"127.0.0.1:{dns_port}"],
        port=sink_port,
        concurrency=args.concurrency,
        per_destination=args.per_destination,
    )
    config.setdefault("webhooks", {}).update(
        allow_private=True, allow_http_loopback=True, concurrency=args.webhook_concurrency
    )
    config["shutdown"]["drain_delay"] = "0s"
    config_path.write_text(yaml.safe_dump(config))
    if events:
        subscribed = subprocess.run(
            [
                str(_BIN / "rail"),
                "clients",
                "events",
                "app",
                "--config",
                str(config_path),
                "--events",
                "all",
                "--events-url",
                f"http://127.0.0.1:{receiver_port}/events",
            ],
            capture_output=True,
            text=True,
        )
        if subscribed.returncode != 0:
            print(f"  cannot subscribe (rail clients events): {subscribed.stderr.strip()}")
    log = workdir / "twistd.log"
    receiver.arrivals.clear()
    receiver.types.clear()
    process = subprocess.Popen(
        [
            str(_BIN / "twistd"),
            "-n",
            "--pidfile=",
            "-l",
            str(log),
            "rail",
            "--config",
            str(config_path),
        ]
    )
    begin = time.monotonic()
    pending_recipients = "SELECT count(*) FROM recipients WHERE status IN ('queued', 'deferred')"
    pending_events = "SELECT count(*) FROM events WHERE status IN ('queued', 'deferred')"
    delivered_at = drained_at = None
    try:
        cpu0 = _cpu(process.pid)
        while True:
            await task.deferLater(reactor, 0.1, lambda: None)
            if process.poll() is not None:
                raise SystemExit(f"twistd exited: see {log}")
            if delivered_at is None and _count(queue, pending_recipients) == 0:
                delivered_at = time.monotonic() - begin
            if delivered_at is not None and _count(queue, pending_events) == 0:
                drained_at = time.monotonic() - begin
                break
            if time.monotonic() - begin > args.timeout:
                raise SystemExit(f"timed out: see {log}")
        cpu = _cpu(process.pid) - cpu0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    latencies = [
        receiver.arrivals[event_id] - created
        for event_id, created in (_created(queue).items() if events else ())
        if event_id in receiver.arrivals
    ]
    return {
        "events": events,
        "intake": args.messages / intake,
        "delivery": args.messages / delivered_at,
        "drained": drained_at,
        "cpu_ms": cpu / args.messages * 1000,
        "posted": dict(receiver.types),
        "latencies": latencies,
        "workdir": workdir,
    }


async def main(reactor: Any, args: argparse.Namespace) -> None:
    records: dict[str, Any] = {
        f"d{n}.bench": [dns.Record_MX(10, b"mx.bench", ttl=3600)] for n in range(args.domains)
    }
    records["mx.bench"] = [dns.Record_A("127.0.0.1", ttl=3600)]
    dns_server = await start_dns(reactor, records)
    sink = await start_smtp_sink(reactor, "-c")
    receiver = _Receiver()
    listening = reactor.listenTCP(0, server.Site(receiver), interface="127.0.0.1")
    receiver_port = listening.getHost().port
    results = []
    try:
        for number in range(args.rounds):
            for events in (False, True):
                print(f"round {number + 1}, events {'on' if events else 'off'} ...")
                result = await _round(
                    reactor, args, events, dns_server.port, sink.port, receiver, receiver_port
                )
                results.append(result)
                line = (
                    f"  intake {result['intake']:,.0f} msg/s, delivery {result['delivery']:,.0f}"
                    f" msg/s, server CPU {result['cpu_ms']:.3f} ms/msg"
                )
                if events:
                    posted = sum(result["posted"].values())
                    line += f", {posted} events POSTed in {result['drained']:.2f} s"
                    if result["latencies"]:
                        line += (
                            f"; reply-to-200 p50 {_percentile(result['latencies'], 0.5) * 1000:.1f}"
                            f" ms, p99 {_percentile(result['latencies'], 0.99) * 1000:.1f} ms"
                        )
                    elif not posted:
                        line += " (no event was POSTed: is the code that emits events there?)"
                print(line)
                print(f"  work directory (delete when done): {result['workdir']}")
    finally:
        await listening.stopListening()
        await sink.stop()
        await dns_server.stop()
    for events in (False, True):
        rows = [r for r in results if r["events"] == events]
        intake = sum(r["intake"] for r in rows) / len(rows)
        delivery = sum(r["delivery"] for r in rows) / len(rows)
        print(
            f"events {'on ' if events else 'off'}: intake {intake:,.0f} msg/s,"
            f" delivery {delivery:,.0f} msg/s (mean of {len(rows)} rounds)"
        )
    latencies = [value for r in results for value in r["latencies"]]
    if latencies:
        print(
            f"event latency, remote reply recorded to the app's 200 ({len(latencies)} events):"
            f" p50 {_percentile(latencies, 0.5) * 1000:.1f} ms,"
            f" p99 {_percentile(latencies, 0.99) * 1000:.1f} ms"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of off/on rounds")
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--window", type=int, default=500, help="acceptances in flight")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--webhook-concurrency", type=int, default=4, help="webhooks.concurrency (per client)"
    )
    parser.add_argument("--per-destination", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
