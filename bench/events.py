"""What storing events costs the SQLite store's writer: acceptances and delivery results
with every client subscribed to every event type, against nobody subscribed.

Run by hand (never by the test suite); bench/README.md has the usage. The store is Rail's
own (:class:`rail.store.sqlite.SQLiteStore`: writer thread, group commit, fsync on every
commit). Each round accepts ``--messages`` messages of ``--recipients`` recipients with
``--concurrency`` acceptances in flight, then records one attempt per message (recipients
in turn ``sent``, ``deferred``, hard-``bounced``), again ``--concurrency`` at a time.
Rounds alternate events off and on (``--rounds`` of each) in the same store, so disk and
cache effects fall on both alike; it prints each round and the medians.

    python bench/events.py --messages 5000 --recipients 3 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import DeferredSemaphore, ensureDeferred, gatherResults

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscription, Subscriptions
from rail.store.ids import new_message_id
from rail.store.model import JobResult, NewMessage, RecipientUpdate
from rail.store.sqlite import SQLiteStore

_T0 = 1_800_000_000.0
_EVERYTHING = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
_FATES = (
    ("sent", "250 2.0.0 Ok: queued as 4Xyz"),
    ("deferred", "451 4.7.1 greylisted, try again later"),
    ("bounced", "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown"),
)


def _message(index: int, recipients: int, when: float) -> NewMessage:
    head = f"From: <app@rail.test>\r\nSubject: {index}\r\n\r\n"
    return NewMessage(
        id=new_message_id(when),
        client="app",
        sender="app@rail.test",
        recipients=tuple(f"u{index}-{r}@example.net" for r in range(recipients)),
        data=(head + "x" * 2000 + "\r\n").encode(),
        channel="api",
        received_at=when,
    )


def _result(message: NewMessage, when: float) -> JobResult:
    updates = []
    for idx in range(len(message.recipients)):
        status, reply = _FATES[idx % len(_FATES)]
        updates.append(
            RecipientUpdate(
                idx,
                status,  # type: ignore[arg-type]
                reply,
                "mx.example.net",
                when + 60 if status == "deferred" else None,
            )
        )
    return JobResult(
        message.id, when, tuple(updates), mx="mx.example.net", address="192.0.2.7", tls="TLSv1.3"
    )


async def _round(
    store: SQLiteStore, options: argparse.Namespace, start: int, events: bool
) -> tuple[float, float]:
    """Acceptances per second and results per second of one round."""
    store.subscriptions = _EVERYTHING if events else NO_SUBSCRIPTIONS
    limit = DeferredSemaphore(options.concurrency)
    messages = [
        _message(start + i, options.recipients, _T0 + (start + i) * 0.001)
        for i in range(options.messages)
    ]
    began = time.perf_counter()
    await gatherResults([limit.run(store.accept, m) for m in messages])
    accepted = time.perf_counter() - began
    began = time.perf_counter()
    await gatherResults([limit.run(store.record, _result(m, m.received_at + 1)) for m in messages])
    recorded = time.perf_counter() - began
    return options.messages / accepted, options.messages / recorded


async def _run(reactor: object, options: argparse.Namespace) -> None:
    queue = Path(options.dir or tempfile.mkdtemp(prefix="rail-events-")) / "queue"
    store = SQLiteStore.open(queue, reactor, max_queued=10_000_000, min_free_bytes=0)  # type: ignore[arg-type]
    store.start()
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    start = 0
    print(
        f"{options.messages} messages x {options.recipients} recipients,"
        f" {options.concurrency} in flight, store in {queue}"
    )
    print("round  events  accepted msg/s  recorded results/s")
    for number in range(options.rounds):
        for events in (False, True):
            accept, record = await _round(store, options, start, events)
            start += options.messages
            figures[events].append((accept, record))
            print(f"{number + 1:5}  {'on' if events else 'off':6}  {accept:14.0f}  {record:18.0f}")
    for events in (False, True):
        accept = statistics.median(a for a, _ in figures[events])
        record = statistics.median(r for _, r in figures[events])
        print(
            f"median events {'on ' if events else 'off'}: {accept:.0f} accepted msg/s,"
            f" {record:.0f} recorded results/s"
        )
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages per round")
    parser.add_argument("--recipients", type=int, default=3, help="recipients per message")
    parser.add_argument("--concurrency", type=int, default=200, help="operations in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (off, on)")
    parser.add_argument("--dir", help="where the store goes (default: a new temporary one)")
    options = parser.parse_args()
    task.react(lambda reactor: ensureDeferred(_run(reactor, options)))


if __name__ == "__main__":
    main()
