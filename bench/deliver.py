"""Delivery benchmark: queue N messages for M domains, let Rail deliver them to smtp-sink.

Run by hand (never by the test suite); bench/README.md has the usage and the target.
Everything is on loopback: a DNS server (this process, twisted.names) answers MX records
for ``d0.bench`` ... ``dM.bench`` pointing at 127.0.0.1, where Postfix's ``smtp-sink``
accepts and discards. The queue is filled first (through Rail's own store, with realistic
2 KB messages from ``app@rail.test``), then ``twistd rail`` starts with delivery on, and
the clock runs until no recipient is pending. Prints delivered msg/s, the server's CPU
seconds per message and its peak RSS.

With ``--kill-at F`` Rail is killed with SIGKILL once a fraction F of the recipients is
recorded sent, restarted at once, and the recovery is timed too (the delivery crash test,
tests/integration/test_delivery_crash.py, checks that nothing is lost; this measures how
long it takes).

    python bench/deliver.py --messages 20000 --domains 10
    python bench/deliver.py --messages 10000 --kill-at 0.5
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.names import dns

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.store.ids import new_message_id
from rail.store.inspect import get_status, list_messages
from rail.store.model import NewMessage
from rail.store.sqlite import SQLiteStore
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import start_smtp_sink

_BIN = Path(sys.executable).parent


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


async def _fill(reactor: object, queue: Path, messages: int, domains: int, size: int) -> None:
    store = SQLiteStore.open(queue, reactor, max_queued=10_000_000, min_free_bytes=0)  # type: ignore[arg-type]
    store.start()
    now = time.time()
    batch: list[Deferred[object]] = []
    for index in range(messages):
        domain = f"d{index % domains}.bench"
        batch.append(
            store.accept(
                NewMessage(
                    id=new_message_id(now),
                    client="app",
                    sender="app@rail.test",
                    recipients=(f"user{index}@{domain}",),
                    data=_message(index, domain, size),
                    channel="api",
                    received_at=now,
                )
            )
        )
        if len(batch) >= 500:
            await defer.gatherResults(batch)
            batch = []
    await defer.gatherResults(batch)
    await store.close()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pending(queue: Path) -> int:
    import sqlite3

    connection = sqlite3.connect(f"file:{queue}/queue.sqlite3?mode=ro", uri=True)
    try:
        row = connection.execute(
            "SELECT count(*) FROM recipients WHERE status IN ('queued', 'deferred')"
        ).fetchone()
        return int(row[0])
    finally:
        connection.close()


async def main(reactor: object, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="rail-bench-deliver-")) / "rail"
    subprocess.run(
        [str(_BIN / "rail"), "init", "--dev", str(workdir), "--https-port", "18443"],
        check=True,
        capture_output=True,
    )
    config_path = workdir / "rail.yaml"
    config = yaml.safe_load(config_path.read_text())
    data_dir = workdir / "data"
    records = {}
    for n in range(args.domains):
        records[f"d{n}.bench"] = [dns.Record_MX(10, b"mx.bench", ttl=3600)]
    records["mx.bench"] = [dns.Record_A("127.0.0.1", ttl=3600)]
    dns_server = await start_dns(reactor, records)
    sink = await start_smtp_sink(reactor, "-c")
    print(f"filling the queue with {args.messages} messages for {args.domains} domains ...")
    started = time.monotonic()
    await _fill(reactor, data_dir / "queue", args.messages, args.domains, args.size)
    print(f"  queued in {time.monotonic() - started:.1f} s")
    config["listen"] = {"https": "tcp:0", "submission": None}
    config["delivery"].update(
        hold=False,
        nameservers=[f"127.0.0.1:{dns_server.port}"],
        port=sink.port,
        concurrency=args.concurrency,
        per_destination=args.per_destination,
        messages_per_connection=args.reuse,
    )
    config["shutdown"]["drain_delay"] = "0s"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / "twistd.log"
    profile = [f"--profile={args.profile}", "--profiler=cprofile", "--savestats"]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(_BIN / "twistd"),
                "-n",
                "--pidfile=",
                "-l",
                str(log),
                *(profile if args.profile else []),
                "rail",
                "--config",
                str(config_path),
            ],
        )

    process = start()
    queue = data_dir / "queue"
    begin = time.monotonic()
    killed: tuple[float, int] | None = None
    try:
        cpu0 = _cpu(process.pid)
        cpu_before_kill = 0.0
        while True:
            await task.deferLater(reactor, 0.1 if killed is None else 0.25, lambda: None)
            if process.poll() is not None:
                raise SystemExit(f"twistd exited: see {log}")
            left = _pending(queue)
            if left == 0:
                break
            if killed is None and args.kill_at is not None:
                if args.messages - left >= args.kill_at * args.messages:
                    cpu_before_kill = _cpu(process.pid) - cpu0
                    process.kill()
                    process.wait()
                    killed = (time.monotonic() - begin, args.messages - _pending(queue))
                    process = start()
                    cpu0 = _cpu(process.pid)
            if time.monotonic() - begin > args.timeout:
                raise SystemExit(f"timed out with {left} pending: see {log}")
        elapsed = time.monotonic() - begin
        cpu = _cpu(process.pid) - cpu0 + cpu_before_kill
        peak = _peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        await sink.stop()
        await dns_server.stop()
    statuses = [get_status(queue, m.id) for m in list_messages(queue)[:200]]
    bounced = sum(1 for s in statuses if s is not None and s.status != "sent")
    rate = args.messages / elapsed
    print(f"delivered {args.messages} messages in {elapsed:.2f} s: {rate:,.0f} msg/s")
    if killed is not None:
        at, done = killed
        print(
            f"SIGKILL after {at:.2f} s with {done} recorded sent; restart to nothing pending"
            f" {elapsed - at:.2f} s (start-up included)"
        )
    print(f"server CPU {cpu:.2f} s = {cpu / args.messages * 1000:.3f} ms per message")
    print(f"peak RSS {peak:.1f} MB; not sent among the first 200: {bounced}")
    print(f"work directory (delete when done): {workdir}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--per-destination", type=int, default=10)
    parser.add_argument("--reuse", type=int, default=100, help="messages per connection")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", help="write twistd's cProfile stats to this file")
    parser.add_argument(
        "--kill-at",
        type=float,
        metavar="F",
        help="SIGKILL Rail once this fraction (0-1) is sent, restart it, time the recovery",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
