"""What one admin-API page costs the store's writer thread as the queue grows.

Fills a queue database with N messages straight through SQL (mostly sent, a few
deferred, one recipient each, 20 clients), then times the store functions behind
``GET /api/v1/admin/messages`` and ``GET /api/v1/messages`` (unfiltered, a common filter,
a filter that matches nothing, one client) and ``show``. Each page examines at most
``SCAN_BUDGET`` messages, so the figures should not grow with N.

    .venv/bin/python bench/admin.py --messages 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

from rail.store.admin import list_messages, show_message
from rail.store.adminmodel import QueueQuery
from rail.store.ids import new_message_id
from rail.store.schema import open_writable


def _fill(connection: sqlite3.Connection, count: int) -> str:
    data = b"Subject: bench\r\nFrom: a@x.example\r\n\r\nhello\r\n"
    digest = hashlib.sha256(data).hexdigest()
    start = 1_800_000_000.0
    connection.execute("BEGIN")
    last = ""
    for n in range(count):
        when = start + n * 0.01
        last = new_message_id(when)
        connection.execute(
            "INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit,"
            " received_at, size, sha256, data)"
            " VALUES (?, ?, 'a@x.example', 'api', 0, 0, ?, ?, ?, ?)",
            (last, f"client{n % 20}", when, len(data), digest, data),
        )
        status = "deferred" if n % 100 == 0 else "sent"
        connection.execute(
            "INSERT INTO recipients (message_id, idx, address, status, attempts,"
            " next_attempt_at, last_reply, updated_at, remote_mta)"
            " VALUES (?, 0, ?, ?, 1, ?, '250 ok', ?, NULL)",
            (last, f"r{n}@d{n % 50}.example", status, when + 600, when),
        )
    connection.execute("COMMIT")
    return last


def _time(label: str, work: object, repeat: int = 5) -> None:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - began)
    shown = f"  ({len(result.messages)} messages)" if hasattr(result, "messages") else ""
    print(f"{label:40s} {best * 1000:8.2f} ms{shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        connection = open_writable(Path(directory) / "queue")
        began = time.perf_counter()
        last = _fill(connection, args.messages)
        print(f"filled {args.messages} messages in {time.perf_counter() - began:.1f} s")
        _time("list, newest 50", lambda: list_messages(connection, QueueQuery()))
        _time(
            "list status=deferred",
            lambda: list_messages(connection, QueueQuery(status="deferred")),
        )
        _time(
            "list domain=d7.example",
            lambda: list_messages(connection, QueueQuery(domain="d7.example")),
        )
        _time(
            "list recipient=nobody (no match)",
            lambda: list_messages(connection, QueueQuery(recipient="nobody@x")),
        )
        _time(
            "client listing, client7",
            lambda: list_messages(connection, QueueQuery(client="client7")),
        )
        _time("show", lambda: show_message(connection, last))
        connection.close()


if __name__ == "__main__":
    main()
