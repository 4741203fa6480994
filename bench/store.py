"""Store benchmark: acceptance throughput and commits of SQLite vs PostgreSQL, side by side.

Run by hand (never by the test suite); bench/README.md has the usage. For each round and
each backend (interleaved, so both see the same machine), a fresh store is opened (SQLite
in a temporary directory; PostgreSQL on a fresh database of a throwaway cluster started
by ``tests/support/postgres.py``, or of ``RAIL_TEST_PG_DSN``) and N messages of SIZE bytes
are accepted with C acceptances in flight at any time (a finished one starts the next),
through the store's writer thread and its group commit, as SMTP and API intake use it.

Printed per backend: messages per second, COMMITs per second and messages per COMMIT,
and CPU time per message of this process (the store's threads, the reactor and the
driver) and of the PostgreSQL server's processes (its postmaster and their children, from
``/proc``; with ``RAIL_TEST_PG_DSN`` naming a server this cannot look into, every
process named ``postgres``).

    python bench/store.py --messages 20000 --concurrency 64 --size 2KB --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from twisted.internet import defer, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.config.units import parse_size
from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.store.postgres import PostgresStore
from rail.store.sqlite import SQLiteStore
from tests.support.postgres import cluster_dsn

_TICK = os.sysconf("SC_CLK_TCK")


def _postmaster(server: str) -> int | None:
    """The pid of the PostgreSQL server of ``server`` (needs a superuser: the test
    cluster's), so only its processes are counted; None: every ``postgres`` process is."""
    try:
        with psycopg.connect(server, autocommit=True) as connection:
            row = connection.execute("SHOW data_directory").fetchone()
        return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None


def _postgres_cpu(postmaster: int | None) -> dict[int, float]:
    """User + system CPU seconds so far of the server's processes: ``postmaster`` and its
    children (or, without it, every process named ``postgres``)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if postmaster is None or postmaster in (pid, parent):
            found[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return found


def _postgres_since(postmaster: int | None, before: dict[int, float]) -> float:
    """CPU seconds the server's processes used since ``before`` (new ones: all theirs)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _postgres_cpu(postmaster).items())


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


_counter = [0]


def _message(size: int, now: float) -> NewMessage:
    _counter[0] += 1
    n = _counter[0]
    head = f"From: app@rail.test\r\nTo: user{n}@dest.test\r\nSubject: {n}\r\n\r\n".encode()
    body = (b"x" * 76 + b"\r\n") * max(1, (size - len(head)) // 78)
    return NewMessage(
        id=new_message_id(now),
        client="app",
        sender="app@rail.test",
        recipients=(f"user{n}@dest.test",),
        data=head + body,
        channel="smtp",
        received_at=now,
    )


def _fresh_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(server, dbname=name)


async def _run(reactor: Any, store: Any, messages: int, concurrency: int, size: int) -> float:
    """Accept ``messages`` keeping ``concurrency`` in flight; the elapsed seconds."""
    started = time.perf_counter()
    sent = 0
    done: defer.Deferred[None] = defer.Deferred()
    finished = [0]

    def one() -> None:
        nonlocal sent
        if sent >= messages:
            return
        sent += 1
        store.accept(_message(size, reactor.seconds())).addBoth(answered)

    def answered(result: object) -> None:
        if isinstance(result, BaseException) or hasattr(result, "getErrorMessage"):
            raise SystemExit(f"accept failed: {result}")
        finished[0] += 1
        if finished[0] == messages:
            done.callback(None)
        else:
            one()

    for _ in range(concurrency):
        one()
    await done
    return time.perf_counter() - started


async def main(reactor: Any, args: argparse.Namespace) -> None:
    size = parse_size(args.size)
    server = cluster_dsn() if "postgresql" in args.backends else ""
    postmaster = _postmaster(server) if server else None
    rows: dict[str, list[tuple[float, int, float, float]]] = {b: [] for b in args.backends}
    with tempfile.TemporaryDirectory(prefix="rail-bench-store-") as temp:
        for round_ in range(args.rounds):
            for backend in args.backends:
                if backend == "sqlite":
                    store: Any = SQLiteStore.open(
                        Path(temp) / f"q{round_}", reactor, max_queued=10**9, min_free_bytes=0
                    )
                else:
                    dsn = _fresh_database(server, f"rail_bench_{round_}")
                    store = PostgresStore.open(dsn, reactor, max_queued=10**9)
                store.start()
                await _run(reactor, store, min(200, args.messages), args.concurrency, size)
                commits0, self0, pg0 = store.commits, _self_cpu(), _postgres_cpu(postmaster)
                elapsed = await _run(reactor, store, args.messages, args.concurrency, size)
                commits = store.commits - commits0
                own, pg = _self_cpu() - self0, _postgres_since(postmaster, pg0)
                await store.close()
                rows[backend].append((elapsed, commits, own, pg))
                print(
                    f"round {round_} {backend:10} {args.messages / elapsed:8.0f} msg/s"
                    f" {commits / elapsed:7.0f} commits/s {args.messages / commits:6.1f} msg/commit"
                    f"  CPU/msg: rail {own / args.messages * 1e6:6.0f} us"
                    f"  postgres {pg / args.messages * 1e6:6.0f} us",
                    flush=True,
                )
    print()
    for backend, results in rows.items():
        elapsed = sum(r[0] for r in results)
        total = args.messages * len(results)
        print(
            f"{backend:10} {total / elapsed:8.0f} msg/s"
            f" {sum(r[1] for r in results) / elapsed:7.0f} commits/s"
            f"  CPU/msg rail {sum(r[2] for r in results) / total * 1e6:6.0f} us"
            f" postgres {sum(r[3] for r in results) / total * 1e6:6.0f} us"
        )
    if len(rows) == 2 and all(rows.values()):
        rate = {b: args.messages * len(r) / sum(x[0] for x in r) for b, r in rows.items()}
        print(f"postgresql / sqlite throughput: {rate['postgresql'] / rate['sqlite']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--size", default="2KB")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, parser.parse_args())))
