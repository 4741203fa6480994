"""Retention benchmark: steady load on the SQLite store in simulated time; does the file
stop growing?

Run by hand (never by the test suite); bench/README.md has the usage. The store is Rail's
own (:class:`rail.store.sqlite.SQLiteStore`, writer and read threads, fsync on every
commit); only time is simulated: messages arrive at ``--rate`` per simulated second, each
is delivered (``sent``) ``--delay`` simulated seconds later, and every ``--interval``
simulated seconds a retention run purges in steps of ``--limit`` messages with horizons
``--body`` and ``--record`` (short, so an hour shows several generations), as
:class:`rail.store.retention.RetentionService` does. Every ``--report`` simulated seconds
it prints the database and WAL sizes, the pages SQLite holds free and the messages stored:
once the record horizon has passed, the size levels off.

    python bench/retention.py --hours 1 --rate 2 --size 10000 --body 600 --record 1200
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.store.ids import new_message_id
from rail.store.model import JobResult, NewMessage, Purged, RecipientUpdate
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore

_T0 = 1_800_000_000.0


def _message(index: int, when: float, size: int) -> NewMessage:
    head = f"From: <app@rail.test>\r\nTo: <u{index}@example.net>\r\nSubject: {index}\r\n\r\n"
    return NewMessage(
        id=new_message_id(when),
        client="app",
        sender="app@rail.test",
        recipients=(f"u{index}@example.net",),
        data=(head + "x" * max(0, size - len(head) - 2) + "\r\n").encode(),
        channel="api",
        received_at=when,
    )


def _sizes(queue: Path) -> tuple[int, int, int, int, int]:
    """Database bytes, WAL bytes, page count, free pages, stored messages."""
    path = database_path(queue)
    wal = Path(f"{path}-wal")
    connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        stored = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        connection.close()
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0, pages, free, stored


async def _run(reactor: object, options: argparse.Namespace) -> None:
    queue = Path(options.dir or tempfile.mkdtemp(prefix="rail-retention-")) / "queue"
    store = SQLiteStore.open(queue, reactor, max_queued=10_000_000, min_free_bytes=0)  # type: ignore[arg-type]
    store.start()
    end = _T0 + options.hours * 3600
    batch_every = max(1.0, options.batch / options.rate)  # simulated seconds per batch
    now = _T0
    index = 0
    in_flight: list[tuple[float, NewMessage]] = []
    next_purge = _T0 + options.interval
    next_report = _T0
    steps: list[float] = []
    totals = Purged()
    started = time.perf_counter()
    print(
        f"rate {options.rate}/s simulated, {options.size} B messages, sent after "
        f"{options.delay:.0f} s; body horizon {options.body:.0f} s, record horizon "
        f"{options.record:.0f} s; purge every {options.interval:.0f} s in steps of "
        f"{options.limit}; database {database_path(queue)}"
    )
    columns = ("sim min", 8), ("accepted", 9), ("stored", 7), ("db MB", 8), ("wal MB", 7)
    print(" ".join(f"{name:>{width}}" for name, width in columns), f"{'pages':>7} {'free':>6}")
    while now <= end:
        if now >= next_report:
            db, wal, pages, free, stored = _sizes(queue)
            print(
                f"{(now - _T0) / 60:8.0f} {index:9d} {stored:7d} {db / 1e6:8.2f} {wal / 1e6:7.2f}"
                f" {pages:7d} {free:6d}"
            )
            while next_report <= now:
                next_report += options.report
        count = round(options.rate * batch_every)
        fresh = [_message(index + n, now, options.size) for n in range(count)]
        index += count
        await gatherResults([store.accept(message) for message in fresh])
        in_flight.extend((now + options.delay, message) for message in fresh)
        due = [message for when, message in in_flight if when <= now]
        in_flight = [(when, message) for when, message in in_flight if when > now]
        await gatherResults(
            [
                store.record(JobResult(m.id, now, (RecipientUpdate(0, "sent", "250 ok"),)))
                for m in due
            ]
        )
        if now >= next_purge:
            while True:
                begun = time.perf_counter()
                step = await store.purge(
                    now, now - options.body, now - options.record, options.limit
                )
                steps.append(time.perf_counter() - begun)
                totals = Purged(
                    totals.bodies + step.bodies,
                    totals.records + step.records,
                    totals.keys,
                    totals.pages + step.pages,
                )
                if not step.more:
                    break
            next_purge += options.interval
        now += batch_every
    elapsed = time.perf_counter() - started
    await store.close()
    steps.sort()
    print(
        f"purged: {totals.bodies} bodies, {totals.records} records, {totals.pages} pages given"
        f" back, in {len(steps)} steps (p50 {steps[len(steps) // 2] * 1e3:.1f} ms, max"
        f" {steps[-1] * 1e3:.1f} ms of wall time each)"
        if steps
        else "purged: nothing (no run reached a horizon)"
    )
    print(f"wall time {elapsed:.1f} s for {index} messages")
    if not options.dir:
        for name in os.listdir(queue):
            os.unlink(queue / name)
        queue.rmdir()
        queue.parent.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours")
    parser.add_argument("--rate", type=float, default=2.0, help="messages per simulated second")
    parser.add_argument("--size", type=int, default=10_000, help="message size in bytes")
    parser.add_argument("--delay", type=float, default=60.0, help="simulated s until sent")
    parser.add_argument("--body", type=float, default=600.0, help="body horizon, simulated s")
    parser.add_argument("--record", type=float, default=1200.0, help="record horizon, s")
    parser.add_argument("--interval", type=float, default=60.0, help="s between purge runs")
    parser.add_argument("--limit", type=int, default=200, help="messages per purge step")
    parser.add_argument("--batch", type=int, default=50, help="messages accepted at once")
    parser.add_argument("--report", type=float, default=300.0, help="s between lines")
    parser.add_argument("--dir", help="keep the queue in this directory (default: temporary)")
    options = parser.parse_args()
    task.react(lambda reactor: ensureDeferred(_run(reactor, options)))


if __name__ == "__main__":
    main()
