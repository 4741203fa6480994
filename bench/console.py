"""What the console's overview, a message search and a message page cost the server as
the queue grows: the store reads behind them plus rendering the page with
``twisted.web.template``.

Fills a queue database with N messages straight through SQL (``bench/admin.py``'s
filler: mostly sent, 1 in 100 deferred, one recipient each, 20 clients), then times, best
of 5:

- the overview: recipient counts from the ``tally`` table, the deferring domains among
  the 2,000 pending recipients due soonest, the webhook backlog, the delivery figures
  kept in memory (a full day of accepted messages and delivered recipients, every minute
  and each of the last 300 seconds counted: the most the charts draw), the page rendered;
- searches by recipient (one that finds a recent message, one that finds nothing and so
  reads the most, ``SCAN_BUDGET`` messages, and hands back a cursor), by sender, status
  and client, each rendered;
- a message page: ``show`` with its attempts and audit rows, its events, rendered.

The issue's bound is 200 ms for the overview and a search at 1,000,000 messages.

    .venv/bin/python bench/console.py --messages 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from admin import _fill
from twisted.web.template import Tag, flattenString

from rail.console import pages
from rail.delivery.stats import DeliveryStats
from rail.store.admin import list_messages, show_message
from rail.store.adminmodel import QueueQuery
from rail.store.deliveries import recipient_counts
from rail.store.model import DeliveryJob, DueRecipient, JobResult, RecipientUpdate
from rail.store.schema import open_writable
from rail.store.trail import deferring_domains, message_events, webhook_backlog


def _render(tag: Tag) -> bytes:
    out: list[bytes] = []
    flattenString(None, tag).addCallback(out.append)
    return out[0]


def _fill_figures(stats: DeliveryStats, now: float) -> None:
    """A day of traffic in the in-memory figures: each second of the last five minutes
    and each minute before, one accepted message and one delivered recipient."""
    job = DeliveryJob("M", "d.example", "client0", "a@rail.test", now - 86_400, False, False,
                      (DueRecipient(0, "b@d.example", 0, None),), b"")  # fmt: skip
    moments = [now - 86_400 + 60 * m for m in range(1440)] + [now - 300 + s for s in range(300)]
    for at in sorted(moments):
        stats.accepted(at)
        stats.attempt(job, JobResult("M", at, (RecipientUpdate(0, "sent", "250 ok"),)), 0.01)


def _time(label: str, work: Callable[[], bytes], repeat: int = 5) -> float:
    best = float("inf")
    size = 0
    for _ in range(repeat):
        began = time.perf_counter()
        size = len(work())
        best = min(best, time.perf_counter() - began)
    print(f"{label:44s} {best * 1000:8.2f} ms  ({size} bytes of HTML)")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        connection = open_writable(Path(directory) / "queue")
        began = time.perf_counter()
        last = _fill(connection, args.messages)
        print(f"filled {args.messages} messages in {time.perf_counter() - began:.1f} s")
        stats = DeliveryStats(0.0)
        now = time.time()
        _fill_figures(stats, now)
        recent = args.messages - 10
        wanted = f"r{recent}@d{recent % 50}.example"

        def overview() -> bytes:
            counts = recipient_counts(connection)
            deferring = deferring_domains(connection)
            backlog = webhook_backlog(connection)
            snapshot: Any = stats.snapshot(now, counts)
            page = pages.overview_page(
                now,
                counts,
                snapshot,
                stats.recent_sent(now),
                10**9,
                [],
                deferring,
                stats.sent_per_minute(now),
                None,
                backlog,
                stats.accepted_per_minute(now),
            )
            return _render(page)

        def search(**fields: str) -> Callable[[], bytes]:
            def work() -> bytes:
                found = list_messages(connection, QueueQuery(**fields))  # type: ignore[arg-type]
                values = dict.fromkeys(pages.SEARCH_FIELDS, "")
                values.update(fields)
                return _render(pages.messages_page(values, found, None))

            return work

        def message() -> bytes:
            detail = show_message(connection, last)
            assert detail is not None
            return _render(pages.message_page(detail, message_events(connection, last), None))

        results = [
            _time("overview", overview),
            _time(f"search recipient={wanted} (found)", search(recipient=wanted)),
            _time("search recipient=nobody@x (no match)", search(recipient="nobody@x")),
            _time("search sender=nobody@x (no match)", search(sender="nobody@x")),
            _time("search status=deferred", search(status="deferred")),
            _time("search client=client7", search(client="client7")),
        ]
        _time("message page", message)
        verdict = "under" if max(results) < 0.2 else "OVER"
        print(f"overview and searches: {verdict} 200 ms (slowest {max(results) * 1000:.1f} ms)")
        connection.close()


if __name__ == "__main__":
    main()
