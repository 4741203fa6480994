"""How long after a revocation commits another node refuses the certificate.

One "node" revokes through the shared registry (the CRL is published and a NOTIFY sent in
the revoking transaction); another, in a thread, LISTENs as rail.shared.listen does, and
on each notification reads and verifies the CRL as its RevocationWatch would. Printed:
milliseconds from the revoke call's return (the commit) to the serial being in the other
node's loaded set, and the revoke call's own duration (p50, p99, max).

    PYTHONPATH=$PWD python bench/shared_revocation.py --count 200 [--dsn DSN]

Without --dsn a throwaway PostgreSQL cluster is started (tests/support/postgres.py).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from rail.pki.registry import CertificateRecord
from rail.pki.revocations import Revocations
from rail.shared.registry import SharedSource
from rail.shared.schema import CHANNEL
from tests.pki.helpers import issue_client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = args.dsn
    if dsn is None:
        from tests.support.postgres import cluster_dsn

        server = cluster_dsn()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS rail_bench_revocation")
            admin.execute("CREATE DATABASE rail_bench_revocation")
        dsn = psycopg.conninfo.make_conninfo(server, dbname="rail_bench_revocation")
    now = datetime.now(UTC)
    source = SharedSource(dsn)
    ca, _ = source.load_or_create_ca("bench.test", now)
    serials = []
    with source.open() as registry:
        for i in range(args.count):
            cert, _ = issue_client(
                ca, name=f"c{i}", emails=(f"c{i}@bench.test",), now=now, validity=timedelta(days=1)
            )
            registry.add(CertificateRecord.from_certificate(cert, now))
            serials.append(cert.serial_number)
    source.publish_crl(ca, now)

    other = SharedSource(dsn)
    revocations = Revocations(other.crl(), ca.certificate)
    revocations.load()
    applied: dict[int, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            ready.set()
            while not done.is_set():
                for _notify in connection.notifies(timeout=0.25):
                    revocations.refresh()
                    at = time.perf_counter()
                    for serial in revocations.serials:
                        applied.setdefault(serial, at)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait()
    lag, call = [], []
    for i, serial in enumerate(serials):
        started = time.perf_counter()
        with source.open() as registry:
            registry.revoke(f"c{i}", datetime.now(UTC))
        committed = time.perf_counter()
        call.append(committed - started)
        while serial not in applied:
            time.sleep(0.0002)
        lag.append(applied[serial] - committed)
    done.set()
    thread.join()

    def row(name: str, values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        p50 = statistics.median(ms)
        return f"{name:32} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {ms[-1]:7.2f} ms"

    print(f"{args.count} revocations, CRL growing to {args.count} entries")
    print(row("revoke call (commit included)", call))
    print(row("commit -> other node applied", lag))


if __name__ == "__main__":
    main()
