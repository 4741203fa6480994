"""Scale benchmark (issue 17): SQLite 1 worker, PostgreSQL 1 and 2 workers, and Postfix.

Run by hand (never by the test suite); bench/README.md has the usage and the targets.
For each round and each system, in turn (the order rotates every round, so no system is
always first after an idle machine):

- **intake**: ``twistd rail`` with delivery held; ``--clients`` mTLS clients submit
  ``--messages`` 2 KB messages over persistent SMTPS sessions (PIPELINING), then as many
  over the HTTPS API with keep-alive (bench/submit.py's clients), to ten recipient
  domains. Postfix gets the same SMTPS load on an implicit-TLS smtpd that requires a
  client certificate from Rail's CA and puts every message on hold.
- **delivery**: Rail restarts with delivery on and sends the whole queue, through MX
  records of a loopback DNS server, to Postfix's ``smtp-sink`` on 127.0.0.1, timed from
  the listeners being up to nothing pending; Postfix releases its hold queue
  (``postsuper -H ALL``, ``postqueue -f``) and relays to the same sink (``relayhost``),
  timed until its queue is empty. Rail signs every message with DKIM (ed25519 + RSA);
  Postfix does not.

Per phase it prints msg/s and the CPU per message of Rail (twistd and its workers: utime
+ stime from /proc, reaped children included) and of PostgreSQL (the postmaster and every
backend) separately; for PostgreSQL also what the database wrote per message (WAL bytes
from ``pg_current_wal_lsn()``, WAL records, full-page images and fsyncs from
``pg_stat_wal``, commits from ``pg_stat_database``, table and index growth), the figures
docs/scaling.md's capacity section is computed from. At the end: each system's median and
range over the rounds, and the ratios the issue sets targets for, computed within each
round (interleaved) and given as median and range.

PostgreSQL is a private throwaway cluster (tests/support/postgres.py: initdb + pg_ctl in a
temporary directory, fsync and ``synchronous_commit`` on) unless ``--dsn`` names a server
on this host; each Rail run gets a fresh database. Postfix needs root and Debian's
postfix package, ``--workers 2`` the workers code (``twistd rail --workers``): a system
that cannot run is reported and left out.

    python bench/scale.py --messages 20000 --rounds 3                  # full scale
    python bench/scale.py --messages 300 --rounds 1 --clients 10       # smoke run
    python bench/scale.py --systems sqlite1 pg1 --messages 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import yaml

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

import submit  # noqa: E402  (bench/submit.py: the clients)

SYSTEMS = ("sqlite1", "pg1", "pg2", "postfix")
_BIN = Path(sys.executable).parent
_TICKS = os.sysconf("SC_CLK_TCK")
_DOMAINS = 10
_POLL = 0.1


# -- CPU of process trees -------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime + cutime + cstime in seconds) of ``pid``, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS


def machine_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine since boot, from /proc/stat: idle
    counts iowait too (a core waiting on an fsync is free for other work)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


class Meter:
    """What a phase cost beyond the systems measured: the load generator's own CPU (this
    process: the clients) and the share of the machine left idle, so a phase that used
    every core is told from one that waited on something."""

    def __init__(self) -> None:
        self._client = time.process_time()
        self._idle, self._total = machine_ticks()

    def read(self) -> tuple[float, float]:
        """(client CPU seconds, idle fraction of the machine) since this was made."""
        idle, total = machine_ticks()
        return time.process_time() - self._client, (idle - self._idle) / max(total - self._total, 1)


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant, each with the reaped children
    it waited for (so a worker or backend that ended between two samples still counts)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo += children.get(pid, [])
    return total


# -- PostgreSQL -----------------------------------------------------------------------------


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@attrs.frozen
class WalSample:
    lsn: int
    records: int
    fpi: int
    syncs: int
    writes: int
    commits: int
    relations: dict[str, int]
    changes: dict[str, tuple[int, int, int]]  # table -> (updates, HOT updates, dead rows)


class Postgres:
    """The server the benchmark's databases live on, and its postmaster's pid."""

    def __init__(self, dsn: str | None) -> None:
        import psycopg

        self._psycopg = psycopg
        if dsn is None:
            from twisted.trial.unittest import SkipTest

            from tests.support.postgres import cluster_dsn

            try:
                dsn = cluster_dsn()
            except SkipTest as skip:
                raise SystemExit(f"scale.py: {skip}") from None
        self.server = dsn
        with psycopg.connect(dsn, autocommit=True) as connection:
            backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            self.settings = dict(
                connection.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync',"
                    " 'synchronous_commit', 'wal_sync_method', 'full_page_writes',"
                    " 'shared_buffers', 'commit_delay', 'server_version', 'max_connections')"
                ).fetchall()
            )
        stat = _stat(backend)
        if stat is None:
            raise SystemExit("scale.py: the PostgreSQL server must run on this host (CPU)")
        self.postmaster = stat[0]
        self._names = 0

    def cpu(self) -> float:
        return tree_cpu(self.postmaster)

    def new_database(self) -> str:
        self._names += 1
        name = f"rail_scale_{os.getpid()}_{self._names}"
        with self._psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self._psycopg.conninfo.make_conninfo(self.server, dbname=name)

    def drop(self, dsn: str) -> None:
        name = self._psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with self._psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def checkpoint(self, dsn: str) -> None:
        """A checkpoint, so every measured phase starts with the same full-page-image debt."""
        with self._psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CHECKPOINT")

    def wal(self, dsn: str) -> WalSample:
        """WAL position and counters, commits of this database, sizes of its tables
        (with their indexes and TOAST). Taken while no Rail process is connected, so
        the statistics every backend flushes when it ends are all in."""
        time.sleep(0.6)  # the statistics of backends that just ended
        with self._psycopg.connect(dsn, autocommit=True) as connection:
            lsn, records, fpi, syncs, writes = connection.execute(
                "SELECT pg_current_wal_lsn()::text, wal_records, wal_fpi, wal_sync, wal_write"
                " FROM pg_stat_wal"
            ).fetchone()
            commits = connection.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
            relations = dict(
                connection.execute(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class"
                    " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                ).fetchall()
            )
            changes = {
                name: (int(updates), int(hot), int(dead))
                for name, updates, hot, dead in connection.execute(
                    "SELECT relname, n_tup_upd, n_tup_hot_upd, n_dead_tup FROM pg_stat_user_tables"
                ).fetchall()
            }
        return WalSample(_lsn(lsn), records, fpi, syncs, writes, commits, relations, changes)

    def connections(self, dsn: str) -> int:
        """Connections to this database, the asking one excluded."""
        with self._psycopg.connect(dsn, autocommit=True) as connection:
            return int(
                connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            )


def wal_figures(before: WalSample, after: WalSample, messages: int) -> dict[str, float]:
    """What the database wrote per message between two samples (each sample opens one
    connection, whose commit is subtracted)."""
    grown = {
        name: after.relations.get(name, 0) - before.relations.get(name, 0)
        for name in sorted(set(before.relations) | set(after.relations))
    }
    figures = {
        "wal_bytes": (after.lsn - before.lsn) / messages,
        "wal_records": (after.records - before.records) / messages,
        "wal_fpi": (after.fpi - before.fpi) / messages,
        "wal_fsyncs": (after.syncs - before.syncs) / messages,
        "wal_writes": (after.writes - before.writes) / messages,
        "commits": (after.commits - before.commits - 1) / messages,
        "table_bytes": sum(grown.values()) / messages,
    }
    for name in ("messages", "recipients"):
        figures[f"{name}_bytes"] = grown.get(name, 0) / messages
    zero = (0, 0, 0)
    updates, hot, dead = (
        after.changes.get("recipients", zero)[i] - before.changes.get("recipients", zero)[i]
        for i in range(3)
    )
    figures["recipient_updates"] = updates / messages
    figures["recipient_hot_updates"] = hot / messages
    figures["recipient_dead_rows"] = dead / messages
    return figures


# -- the loopback world: DNS (a reactor thread) and smtp-sink --------------------------------


class Loopback:
    """MX records for d0.bench .. d9.bench at 127.0.0.1, and smtp-sink there."""

    def __init__(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
        from twisted.internet.threads import blockingCallFromThread
        from twisted.names import dns

        from tests.support.dnsserver import start_dns

        self._reactor = reactor
        self._thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
        )
        self._thread.start()
        records: dict[str, list[Any]] = {
            f"d{n}.bench": [dns.Record_MX(10, b"mx.bench", ttl=3600)] for n in range(_DOMAINS)
        }
        records["mx.bench"] = [dns.Record_A("127.0.0.1", ttl=3600)]
        self.dns = blockingCallFromThread(
            reactor, lambda: Deferred.fromCoroutine(start_dns(reactor, records))
        )
        self.sink_port = _free_port()
        sink = "/usr/sbin/smtp-sink"
        if not os.access(sink, os.X_OK):
            raise SystemExit(f"scale.py: {sink} is not installed (Debian package postfix)")
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self._sink = subprocess.Popen(
            [sink, *user, f"127.0.0.1:{self.sink_port}", "256"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.sink_port, self._sink.poll, "smtp-sink")

    def close(self) -> None:
        from twisted.internet.threads import blockingCallFromThread

        self._sink.terminate()
        self._sink.wait(10)
        blockingCallFromThread(self._reactor, self.dns.stop)
        self._reactor.callFromThread(self._reactor.stop)
        self._thread.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, ended: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ended() is not None:
            raise RuntimeError(f"{what} exited before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: nothing listening on {port} after {timeout:.0f} s")
        time.sleep(0.05)


# -- load ----------------------------------------------------------------------------------


def _targets(config: Path, smtp_port: int, https_port: int) -> list[submit.Target]:
    directory = config.parent
    return [
        submit.Target(
            host="127.0.0.1",
            smtp_port=smtp_port,
            https_port=https_port,
            ca=directory / "ca.crt",
            cert=directory / "app.crt",
            key=directory / "app.key",
            sender="app@rail.test",
            recipient=f"user{n}@d{n}.bench",
            server_name="127.0.0.1",
        )
        for n in range(_DOMAINS)
    ]


def _padding(body: str) -> submit.Padding:
    return submit.random_padding if body == "random" else submit._padding


async def _load(
    targets: list[submit.Target],
    mode: str,
    clients: int,
    messages: int,
    size: int,
    padding: submit.Padding,
    timeout: float = 900.0,
) -> tuple[submit.Stats, float]:
    """bench/submit.py's clients, client i sending to domain i mod 10, sharing the work."""
    context = targets[0].tls_context()
    stats, work = submit.Stats(), submit.Work(messages, None)
    jobs = []
    for i in range(clients):
        target = targets[i % len(targets)]
        if mode == "http":
            request = submit.http_request(target, size, padding=padding)
            jobs.append(submit.http_client(target, context, work, stats, request))
        else:
            message = submit.smtp_message(target, size, padding)
            jobs.append(submit.smtp_client(target, context, work, stats, message, False))
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*jobs)
    except TimeoutError:
        raise RuntimeError(
            f"{mode} load not done after {timeout:.0f} s: {_errors(stats)}"
        ) from None
    return stats, time.perf_counter() - began


@attrs.frozen
class Phase:
    """One measured phase of one system in one round."""

    system: str
    round: int
    phase: str  # smtp, api, delivery
    messages: int
    seconds: float
    rail_cpu: float  # seconds; Rail or Postfix
    pg_cpu: float | None
    errors: str = ""
    wal: dict[str, float] | None = None
    client_cpu: float | None = None  # seconds: the load generator (intake phases)
    idle: float | None = None  # fraction of the machine's CPU left idle

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        per = max(self.messages, 1)
        text = (
            f"  {self.system:<8} {self.phase:<9} {self.messages:>7} msgs {self.seconds:7.2f} s"
            f" {self.rate:8.0f} msg/s   {'Postfix' if self.system == 'postfix' else 'Rail'}"
            f" {self.rail_cpu / per * 1000:.3f} ms/msg"
        )
        if self.pg_cpu is not None:
            text += f", PostgreSQL {self.pg_cpu / per * 1000:.3f} ms/msg"
        if self.client_cpu is not None:
            text += f", clients {self.client_cpu / per * 1000:.3f} ms/msg"
        if self.idle is not None:
            text += f"; machine {self.idle:.0%} idle"
        if self.errors:
            text += f"   errors: {self.errors}"
        return text


def _errors(stats: submit.Stats) -> str:
    return ", ".join(f"{key}: {count}" for key, count in stats.errors.most_common())


# -- Rail ------------------------------------------------------------------------------------


class RailRun:
    """``rail init --dev`` in a fresh directory, configured for one system."""

    def __init__(
        self, root: Path, system: str, dsn: str | None, loopback: Loopback, args: Any
    ) -> None:
        self.system, self.dsn = system, dsn
        self.workers = 2 if system == "pg2" else 1
        self.directory = root / "rail"
        self.config = self.directory / "rail.yaml"
        self.smtp_port, self.https_port = _free_port(), _free_port()
        subprocess.run(
            [
                str(_BIN / "rail"),
                "init",
                "--dev",
                str(self.directory),
                "--https-port",
                str(self.https_port),
                "--submission-port",
                str(self.smtp_port),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        document = yaml.safe_load(self.config.read_text())
        document["listen"].update(inbound=None, http=None, dns=None)
        document["shutdown"]["drain_delay"] = "0s"
        document["storage"]["max_queued"] = 10_000_000
        document["storage"]["min_free_space"] = "0B"
        if dsn is not None:
            document["storage"].update(backend="postgresql", dsn=dsn)
        document["delivery"].update(
            nameservers=[f"127.0.0.1:{loopback.dns.port}"],
            port=loopback.sink_port,
            concurrency=args.concurrency,
            per_destination=args.per_destination,
            messages_per_connection=args.reuse,
        )
        self._document = document
        self.log = self.directory / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, hold: bool) -> None:
        self._document["delivery"]["hold"] = hold
        self.config.write_text(yaml.safe_dump(self._document))
        workers = ["--workers", str(self.workers)] if self.workers > 1 else []
        logged = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    str(_BIN / "twistd"),
                    "-n",
                    "--pidfile=",
                    "rail",
                    "--config",
                    str(self.config),
                    *workers,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        for port in (self.smtp_port, self.https_port):
            _wait_port(port, self.process.poll, f"twistd (see {self.log})")
        if self.workers > 1:
            # The parent binds the listeners before its workers start: wait for them.
            ready = f"all {self.workers} workers ready".encode()
            deadline = time.monotonic() + 60
            while ready not in self.log.read_bytes()[logged:]:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start: see {self.log}")
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @contextmanager
    def queue(self) -> Iterator[Any]:
        """A connection to this run's queue, for counting what is pending."""
        if self.dsn is not None:
            import psycopg

            connection = psycopg.connect(self.dsn, autocommit=True)
        else:
            path = self.directory / "data" / "queue" / "queue.sqlite3"
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            yield connection
        finally:
            connection.close()


def _pending(connection: Any) -> int:
    row = connection.execute(
        "SELECT count(*) FROM recipients WHERE status IN ('queued', 'deferred')"
    ).fetchone()
    return int(row[0])


def run_rail(
    system: str, number: int, root: Path, postgres: Postgres | None, loopback: Loopback, args: Any
) -> list[Phase]:
    if not system.startswith("pg"):
        postgres = None
    dsn = postgres.new_database() if postgres is not None else None
    run = RailRun(root, system, dsn, loopback, args)
    phases: list[Phase] = []
    try:
        # The schema is made by the first start; the WAL is measured from after it.
        run.start(hold=True)
        run.stop()
        if postgres is not None and dsn is not None:
            if "messages" not in postgres.wal(dsn).relations:
                raise SystemExit(
                    "scale.py: this Rail ignores storage.backend: postgresql (no tables in"
                    " the database after a start); leave out pg1 and pg2"
                )
            postgres.checkpoint(dsn)
            before = postgres.wal(dsn)
        run.start(hold=True)
        targets = _targets(run.config, run.smtp_port, run.https_port)
        connections = None
        for mode, phase in (("smtp-persistent", "smtp"), ("http", "api")):
            rail0 = tree_cpu(run.pid)
            pg0 = postgres.cpu() if postgres else None
            meter = Meter()
            stats, seconds = asyncio.run(
                _load(
                    targets,
                    mode,
                    args.clients,
                    args.messages,
                    args.size,
                    _padding(args.body),
                    args.timeout,
                )
            )
            client_cpu, idle = meter.read()
            rail_cpu = tree_cpu(run.pid) - rail0
            pg_cpu = postgres.cpu() - pg0 if postgres and pg0 is not None else None
            if postgres is not None and dsn is not None:
                connections = postgres.connections(dsn)
            phases.append(
                Phase(
                    system,
                    number,
                    phase,
                    len(stats.latencies),
                    seconds,
                    rail_cpu,
                    pg_cpu,
                    _errors(stats),
                    client_cpu=client_cpu,
                    idle=idle,
                )
            )
        run.stop()
        accepted = sum(p.messages for p in phases)
        if postgres is not None and dsn is not None:
            after = postgres.wal(dsn)
            intake = wal_figures(before, after, accepted)
            intake["connections"] = float(connections or 0)
            phases[-1] = attrs.evolve(phases[-1], wal=intake)
            postgres.checkpoint(dsn)
            before = postgres.wal(dsn)
        # Delivery of everything accepted, timed from the listeners being up.
        run.start(hold=False)
        began = time.perf_counter()
        rail0 = tree_cpu(run.pid)
        pg0 = postgres.cpu() if postgres else None
        meter = Meter()
        polls = 0
        with run.queue() as connection:
            while _pending(connection):
                polls += 1
                if run.process is not None and run.process.poll() is not None:
                    raise RuntimeError(f"twistd exited during delivery: see {run.log}")
                if time.perf_counter() - began > args.timeout:
                    raise RuntimeError(f"delivery timed out: see {run.log}")
                time.sleep(_POLL)
        seconds = time.perf_counter() - began
        _, idle = meter.read()
        rail_cpu = tree_cpu(run.pid) - rail0
        pg_cpu = postgres.cpu() - pg0 if postgres and pg0 is not None else None
        run.stop()
        wal = None
        if postgres is not None and dsn is not None:
            wal = wal_figures(before, postgres.wal(dsn), accepted)
            wal["commits"] -= polls / accepted  # the benchmark's own polls
        phases.append(
            Phase(
                system, number, "delivery", accepted, seconds, rail_cpu, pg_cpu, wal=wal, idle=idle
            )
        )
    finally:
        run.stop()
        if postgres is not None and dsn is not None:
            postgres.drop(dsn)
    return phases


# -- Postfix ---------------------------------------------------------------------------------


def _postfix_queued(root: Path) -> int:
    """Messages in Postfix's queue (every queue directory a message passes through)."""
    total = 0
    for name in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(root / "queue" / name):
            total += len(files)
    return total


def _start_postfix(port: int, loopback: Loopback, extra: str, tls: Path) -> Any:
    """Start Postfix and wait for its own start line (a connection made before it can
    leave the master with no smtpd). Now and then the master never gets there (no line,
    no log at all, on this VM): it is stopped and started again, three times at most."""
    from tests.support.postfix import start_postfix

    for _ in range(3):
        postfix = start_postfix(
            port,
            ("local.invalid",),
            hostname="rail.test",
            relay_to=loopback.sink_port,
            extra=extra,
            certificate=(tls / "server.crt", tls / "server.key"),
        )
        deadline = time.monotonic() + 15
        while postfix.process.poll() is None and time.monotonic() < deadline:
            if postfix.log.exists() and "daemon started" in postfix.log.read_text():
                return postfix
            time.sleep(0.05)
        print("Postfix did not start; starting it again", file=sys.stderr)
        postfix.stop()
    raise RuntimeError("Postfix did not start three times")


def run_postfix(number: int, root: Path, loopback: Loopback, args: Any) -> list[Phase]:
    """Postfix 3 with Rail's server certificate and CA: implicit TLS, client certificate
    required, everything held at intake; then released and relayed to the sink."""
    dev = root / "dev"
    subprocess.run(
        [str(_BIN / "rail"), "init", "--dev", str(dev)], check=True, stdout=subprocess.DEVNULL
    )
    port = _free_port()
    tls = dev / "data" / "tls"
    extra = f"""
smtpd_tls_wrappermode = yes
smtpd_tls_security_level = encrypt
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_tls_CAfile = {dev / "ca.crt"}
smtpd_tls_loglevel = 0
smtpd_end_of_data_restrictions = check_client_access static:HOLD
smtp_tls_security_level = none
smtp_tls_loglevel = 0
smtp_destination_concurrency_limit = {args.concurrency}
"""
    postfix = _start_postfix(port, loopback, extra, tls)
    phases: list[Phase] = []
    try:
        _wait_port(port, postfix.process.poll, f"Postfix (see {postfix.log})")
        targets = _targets(dev / "rail.yaml", port, 0)
        pid = postfix.process.pid
        cpu0 = tree_cpu(pid)
        meter = Meter()
        stats, seconds = asyncio.run(
            _load(
                targets,
                "smtp-persistent",
                args.clients,
                args.messages,
                args.size,
                _padding(args.body),
                args.timeout,
            )
        )
        client_cpu, idle = meter.read()
        phases.append(
            Phase(
                "postfix",
                number,
                "smtp",
                len(stats.latencies),
                seconds,
                tree_cpu(pid) - cpu0,
                None,
                _errors(stats),
                client_cpu=client_cpu,
                idle=idle,
            )
        )
        queued = _postfix_queued(postfix.root)
        cpu0 = tree_cpu(pid)
        began = time.perf_counter()
        meter = Meter()
        conf = str(postfix.root / "conf")
        # Released mail goes to the deferred queue; flushing it makes the queue manager
        # take all of it now rather than at its next scan (queue_run_delay).
        for command in (
            ["/usr/sbin/postsuper", "-c", conf, "-H", "ALL"],
            ["/usr/sbin/postqueue", "-c", conf, "-f"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        while _postfix_queued(postfix.root):
            if postfix.process.poll() is not None:
                raise RuntimeError(f"Postfix exited: see {postfix.log}")
            if time.perf_counter() - began > args.timeout:
                raise RuntimeError(f"Postfix delivery timed out: see {postfix.log}")
            time.sleep(_POLL)
        seconds = time.perf_counter() - began
        phases.append(
            Phase(
                "postfix",
                number,
                "delivery",
                queued,
                seconds,
                tree_cpu(pid) - cpu0,
                None,
                idle=meter.read()[1],
            )
        )
    except BaseException:
        log = postfix.log.read_text() if postfix.log.exists() else "(no log)"
        print(f"Postfix failed; the end of its log:\n{log[-3000:]}", file=sys.stderr)
        raise
    finally:
        postfix.stop()
    return phases


# -- reporting -------------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 0) -> str:
    if not values:
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def summary(phases: list[Phase], systems: list[str], rounds: int) -> str:
    lines = ["", "medians [ranges] over the rounds:"]
    for system in systems:
        for phase in ("smtp", "api", "delivery"):
            mine = [p for p in phases if p.system == system and p.phase == phase]
            if not mine:
                continue
            cpu = [p.rail_cpu / max(p.messages, 1) * 1000 for p in mine]
            line = (
                f"  {system:<8} {phase:<9} {_spread([p.rate for p in mine])} msg/s;"
                f" {'Postfix' if system == 'postfix' else 'Rail'} {_spread(cpu, 3)} ms/msg"
            )
            pg = [p.pg_cpu / max(p.messages, 1) * 1000 for p in mine if p.pg_cpu is not None]
            if pg:
                line += f"; PostgreSQL {_spread(pg, 3)} ms/msg"
            client = [
                p.client_cpu / max(p.messages, 1) * 1000 for p in mine if p.client_cpu is not None
            ]
            if client:
                line += f"; clients {_spread(client, 3)} ms/msg"
            idle = [p.idle * 100 for p in mine if p.idle is not None]
            if idle:
                line += f"; machine idle {_spread(idle)}%"
            lines.append(line)

    def rate(system: str, phase: str, number: int) -> float | None:
        for p in phases:
            if (p.system, p.phase, p.round) == (system, phase, number) and p.messages:
                return p.rate
        return None

    def ratio(a: str, b: str, phase: str) -> list[float]:
        found = []
        for number in range(rounds):
            x, y = rate(a, phase, number), rate(b, phase, number)
            if x and y:
                found.append(x / y)
        return found

    lines += ["", "ratios within each round, median [range] (target):"]
    checks = [
        ("pg2", "pg1", "smtp", 1.6, "intake SMTPS, 2 workers / 1 worker"),
        ("pg2", "pg1", "api", 1.6, "intake API, 2 workers / 1 worker"),
        ("pg2", "sqlite1", "smtp", None, "intake SMTPS, PostgreSQL 2 workers / SQLite"),
        ("pg2", "sqlite1", "api", None, "intake API, PostgreSQL 2 workers / SQLite"),
        ("pg1", "sqlite1", "smtp", 0.8, "intake SMTPS, PostgreSQL 1 worker / SQLite"),
        ("pg1", "sqlite1", "api", 0.8, "intake API, PostgreSQL 1 worker / SQLite"),
        ("pg1", "sqlite1", "delivery", 0.8, "delivery, PostgreSQL 1 worker / SQLite"),
        ("pg2", "pg1", "delivery", None, "delivery, 2 workers / 1 worker"),
        ("sqlite1", "postfix", "smtp", None, "intake SMTPS, SQLite / Postfix"),
        ("pg2", "postfix", "smtp", None, "intake SMTPS, PostgreSQL 2 workers / Postfix"),
        ("sqlite1", "postfix", "delivery", 1.5, "delivery, SQLite / Postfix"),
        ("pg1", "postfix", "delivery", 1.5, "delivery, PostgreSQL 1 worker / Postfix"),
        ("pg2", "postfix", "delivery", 1.5, "delivery, PostgreSQL 2 workers / Postfix"),
    ]
    for a, b, phase, target, label in checks:
        found = ratio(a, b, phase)
        if not found:
            continue
        verdict = ""
        if target is not None:
            verdict = (
                f"  (>= {target}: {'met' if statistics.median(found) >= target else 'MISSED'})"
            )
        lines.append(f"  {label:<48} {_spread(found, 2)}{verdict}")

    walled = [p for p in phases if p.wal is not None]
    if walled:
        lines += ["", "PostgreSQL writes per message (medians over the rounds):"]
        for system in systems:
            for phase in ("api", "delivery"):
                mine = [p.wal for p in walled if p.system == system and p.phase == phase]
                if not mine:
                    continue
                keys = list(mine[0])
                what = "intake (SMTPS + API)" if phase == "api" else "delivery"
                figures = ", ".join(
                    f"{key} {statistics.median(w[key] for w in mine if w):.2f}" for key in keys
                )
                lines.append(f"  {system:<8} {what}: {figures}")
    return "\n".join(lines)


def _workers_supported() -> bool:
    help_text = subprocess.run(
        [str(_BIN / "twistd"), "rail", "--help"], capture_output=True, text=True
    ).stdout
    return "--workers" in help_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000, help="per intake phase")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument(
        "--body",
        choices=("random", "text"),
        default="random",
        help="random base64 lines (incompressible, like an attachment) or submit.py's"
        " repeated text (which PostgreSQL's TOAST compresses to almost nothing)",
    )
    parser.add_argument("--concurrency", type=int, default=100, help="outbound connections")
    parser.add_argument("--per-destination", type=int, default=10)
    parser.add_argument("--reuse", type=int, default=100, help="messages per connection")
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds")
    parser.add_argument("--dsn", help="a PostgreSQL server on this host (default: a private one)")
    parser.add_argument("--workdir", help="where the temporary directories go")
    args = parser.parse_args()

    systems = list(args.systems)
    if "pg2" in systems and not _workers_supported():
        print("pg2 left out: this Rail has no `twistd rail --workers`", file=sys.stderr)
        systems.remove("pg2")
    if "postfix" in systems and (
        os.geteuid() != 0 or not Path("/usr/lib/postfix/sbin/master").exists()
    ):
        print("postfix left out: it needs root and Debian's postfix package", file=sys.stderr)
        systems.remove("postfix")
    postgres = Postgres(args.dsn) if any(s.startswith("pg") for s in systems) else None
    if postgres is not None:
        print(f"PostgreSQL {postgres.settings}", file=sys.stderr)
    loopback = Loopback()
    phases: list[Phase] = []
    try:
        for number in range(args.rounds):
            order = systems[number % len(systems) :] + systems[: number % len(systems)]
            print(f"round {number + 1} of {args.rounds}: {' '.join(order)}")
            for system in order:
                root = Path(tempfile.mkdtemp(prefix=f"rail-scale-{system}-", dir=args.workdir))
                try:
                    if system == "postfix":
                        found = run_postfix(number, root, loopback, args)
                    else:
                        found = run_rail(system, number, root, postgres, loopback, args)
                except BaseException:
                    print(f"{system} failed; its directory is kept: {root}", file=sys.stderr)
                    raise
                shutil.rmtree(root, ignore_errors=True)
                for phase in found:
                    print(phase.line(), flush=True)
                phases += found
    finally:
        loopback.close()
    print(summary(phases, systems, args.rounds))


if __name__ == "__main__":
    main()
