"""What leases cost on PostgreSQL: claims, results and renewals with and without them.

Queues N one-recipient messages in a fresh database, then, in the writer's way (one
connection, explicit transactions), claims them all ``--batch`` at a time and records
each result, twice: as a node that takes no leases (SQLite's way, on the same server) and
as a node that does (``FOR UPDATE SKIP LOCKED``, ``claimed_by``/``lease_until`` written in
the claim's transaction, the holder checked before each result). Then renews the leases
of ``--in-flight`` jobs, as a runner does every third of a lease. Prints microseconds per
job for each step and the ratio.

    .venv/bin/python bench/leases.py --messages 20000 [--dsn "host=... dbname=..."]

Without ``--dsn`` it starts a throwaway cluster (Debian's ``postgresql``), as the tests do.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from rail.store.db import POSTGRESQL
from rail.store.deliveries import claim_due, insert_message, record_result
from rail.store.ids import new_message_id
from rail.store.lease import Lease, renew
from rail.store.model import JobResult, NewMessage, RecipientUpdate
from rail.store.pg import PGConnection, connect
from rail.store.pgschema import prepare

_T0 = 1_800_000_000.0


def _database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    connection = connect(dsn)
    prepare(connection, name)
    connection.close()
    return dsn


def _fill(connection: PGConnection, count: int) -> list[str]:
    ids = []
    connection.execute("BEGIN")
    for n in range(count):
        when = _T0 + n * 0.001
        message = NewMessage(
            id=new_message_id(when),
            client="bench",
            sender="bench@example.com",
            recipients=(f"r{n}@example.net",),
            data=b"Subject: bench\r\n\r\nhello\r\n",
            channel="api",
            received_at=when,
        )
        insert_message(connection, message)
        ids.append(message.id)
    connection.execute("COMMIT")
    return ids


def _run(connection: PGConnection, count: int, batch: int, node: str | None) -> tuple[float, float]:
    """Claim everything ``batch`` at a time, then record every job; seconds of each."""
    now = _T0 + count
    claimed = []
    started = time.perf_counter()
    while True:
        connection.execute(POSTGRESQL.begin)
        lease = None if node is None else Lease(node, now, now + 60)
        jobs, _ = claim_due(connection, now, batch, frozenset(), lease)
        connection.execute("COMMIT")
        if not jobs:
            break
        claimed.extend(jobs)
        if node is None:
            # No lease keeps a claimed job from the next claim: the runner's exclude set
            # does; here the jobs are made not due instead, outside the timing's SQL.
            connection.execute(
                "UPDATE recipients SET next_attempt_at = ? WHERE message_id = ANY(?)",
                (now + 1, [job.message_id for job in jobs]),
            )
    claiming = time.perf_counter() - started
    started = time.perf_counter()
    for chunk in range(0, len(claimed), 100):
        connection.execute(POSTGRESQL.begin)  # the writer group-commits its results
        for job in claimed[chunk : chunk + 100]:
            result = JobResult(job.message_id, now, (RecipientUpdate(0, "sent", "250 ok"),))
            record_result(connection, result, None, node=node)
        connection.execute("COMMIT")
    recording = time.perf_counter() - started
    assert len(claimed) == count, len(claimed)
    return claiming, recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=2000)
    parser.add_argument("--dsn", help="a server DSN (a role that may create databases)")
    options = parser.parse_args()
    if options.dsn is None:
        from tests.support.postgres import cluster_dsn

        server = cluster_dsn()
    else:
        server = options.dsn
    figures = {}
    for label, node in (("no leases", None), ("leases", "bench/1/node")):
        connection = connect(_database(server, f"rail_bench_leases_{node is not None:d}"))
        _fill(connection, options.messages)
        claiming, recording = _run(connection, options.messages, options.batch, node)
        figures[label] = (claiming, recording)
        print(
            f"{label:9}: claim {claiming / options.messages * 1e6:7.1f} us/job,"
            f" record {recording / options.messages * 1e6:7.1f} us/job"
        )
        connection.close()
    base, leased = figures["no leases"], figures["leases"]
    print(f"ratio    : claim {leased[0] / base[0]:.2f}x, record {leased[1] / base[1]:.2f}x")
    connection = connect(_database(server, "rail_bench_leases_renew"))
    ids = _fill(connection, options.in_flight)
    connection.execute("UPDATE recipients SET claimed_by = 'n', lease_until = 0")
    started = time.perf_counter()
    rounds = 20
    for n in range(rounds):
        connection.execute(POSTGRESQL.begin)
        renewed = renew(connection, "recipients", "message_id", ids, "n", float(n))
        connection.execute("COMMIT")
    seconds = (time.perf_counter() - started) / rounds
    assert renewed == len(ids), renewed
    print(
        f"renewal  : {seconds * 1e3:.1f} ms for {len(ids)} jobs in flight"
        f" ({seconds / len(ids) * 1e6:.1f} us/job, every lease/3)"
    )
    connection.close()


if __name__ == "__main__":
    main()
