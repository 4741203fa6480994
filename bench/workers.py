"""Worker processes benchmark: intake with ``--workers 1`` against ``--workers 2`` (or more).

Run by hand (never by the test suite); bench/README.md has the usage and the target.
Starts ``rail init --dev`` in a temporary directory with ``delivery.hold: true`` (intake
only), then, in interleaved rounds, ``twistd rail --workers W`` for each W, loads it with
bench/submit.py's clients (persistent mTLS SMTP, the HTTPS API), and prints per run:
messages per second, the CPU seconds of the parent and of each worker per message, and
how the clients' connections were spread over the workers (counted from /proc while the
load runs). More than one worker needs PostgreSQL: give ``--dsn``.

    python bench/workers.py --postgres --workers 1 2 --rounds 3   # a throwaway cluster
    python bench/workers.py --dsn "host=/tmp/pg dbname=rail" --workers 1 2 --rounds 3
    python bench/workers.py --dsn ... --balance shared   # worker_sockets: shared
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import submit  # bench/submit.py, next to this file

_BIN = Path(sys.executable).parent


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def cpu_seconds(pid: int) -> float:
    try:
        return submit.proc_sample(pid).cpu_seconds
    except OSError:
        return 0.0


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on the machine (``comm`` postgres)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            total += cpu_seconds(int(entry.name))
        except OSError:
            continue
    return total


def established(pids: list[int], port: int) -> Counter[int]:
    """How many established TCP connections to local ``port`` each of ``pids`` holds."""
    inodes: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            inodes[fields[9]] = port
    counts: Counter[int] = Counter()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    counts[pid] += 1
        except OSError:
            continue
    return counts


class Spread:
    """Samples, in a thread, the connections each worker holds; keeps the fullest sample."""

    def __init__(self, workers: list[int], port: int) -> None:
        self._workers, self._port = workers, port
        self.best: Counter[int] = Counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Spread:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(0.25):
            sample = established(self._workers, self._port)
            if sum(sample.values()) > sum(self.best.values()):
                self.best = sample


class Rail:
    """``rail init --dev`` once; ``twistd rail --workers W`` per run."""

    def __init__(self, workdir: str | None, dsn: str | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rail-workers-", dir=workdir))
        self.config = self.directory / "dev" / "rail.yaml"
        self.ports = [submit._free_port() for _ in range(5)]
        https, smtp, inbound, http, dns = self.ports
        subprocess.run(
            [
                str(_BIN / "rail"),
                "init",
                "--dev",
                str(self.config.parent),
                *("--https-port", str(https), "--submission-port", str(smtp)),
                *("--inbound-port", str(inbound), "--http-port", str(http)),
                *("--dns-port", str(dns)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        text = self.config.read_text()
        assert "hold: true" in text  # the dev config queues and delivers nothing
        if dsn:
            backend = f"storage:\n  backend: postgresql\n  dsn: {json.dumps(dsn)}\n"
            text = text.replace("storage:\n", backend, 1)
        self.config.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, workers: int, balance: str) -> None:
        log = (self.directory / "twistd.log").open("ab")
        text = self.config.read_text().split("\nworker_sockets:")[0]
        self.config.write_text(f"{text}\nworker_sockets: {balance}\n")
        command = [str(_BIN / "twistd"), "-n", "--pidfile=", "rail", "--config", str(self.config)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(workers)], stdout=log, stderr=subprocess.STDOUT
        )
        submit._wait_for(self.ports[:2], self.process, self.directory / "twistd.log")
        deadline = time.monotonic() + 60
        while workers > 1 and len(children(self.process.pid)) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers.py: the workers did not start")
            time.sleep(0.1)
        time.sleep(1.0)  # every worker listening

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)

    def close(self, keep: bool) -> None:
        self.stop()
        if keep:
            print(f"kept {self.directory}", file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


def one_run(rail: Rail, args: argparse.Namespace, workers: int, mode: str) -> str:
    rail.start(workers, args.balance)
    try:
        assert rail.process is not None
        parent = rail.process.pid
        pids = children(parent) if workers > 1 else [parent]
        target = submit.target_from(
            argparse.Namespace(
                config=rail.config,
                host=None,
                smtp_port=None,
                https_port=None,
                ca=None,
                cert=None,
                key=None,
                sender=None,
                to="bench@example.com",
                server_name=None,
                mode=mode,
            )
        )
        before = {pid: cpu_seconds(pid) for pid in {parent, *pids}}
        database_before, client_before = postgres_cpu(), time.process_time()
        port = target.https_port if mode.startswith("http") else target.smtp_port
        with Spread(pids, port) as spread:
            stats, elapsed = asyncio.run(
                submit.run_load(target, mode, args.clients, args.messages, args.size, None)
            )
        accepted = len(stats.latencies) or 1
        cpu = {pid: (cpu_seconds(pid) - before[pid]) / accepted * 1000 for pid in before}
        database = (postgres_cpu() - database_before) / accepted * 1000
        client = (time.process_time() - client_before) / accepted * 1000
        per_process = ", ".join(
            f"{'parent' if pid == parent and workers > 1 else f'pid {pid}'} {ms:.3f}"
            for pid, ms in sorted(cpu.items())
        )
        connections = " ".join(str(spread.best.get(pid, 0)) for pid in pids)
        errors = ", ".join(f"{k}: {n}" for k, n in stats.errors.most_common()) or "none"
        return (
            f"workers {workers}  {mode:16} {len(stats.latencies) / elapsed:7.0f} msg/s"
            f"  CPU ms/msg: {per_process}, PostgreSQL {database:.3f}, client {client:.3f}"
            f"  connections per worker: {connections}"
            f"  errors: {errors}"
        )
    finally:
        rail.stop()


def throwaway_database() -> str:
    """A new database in the tests' throwaway cluster (stopped when this script exits)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import psycopg

    from tests.support.postgres import cluster_dsn

    server = cluster_dsn()
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("CREATE DATABASE rail_bench")
    return psycopg.conninfo.make_conninfo(server, dbname="rail_bench")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="PostgreSQL (storage.dsn); needed for more than 1 worker")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway PostgreSQL cluster (as the tests do) and use it",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--balance", choices=("reuseport", "shared"), default="reuseport", help="worker_sockets"
    )
    parser.add_argument("--modes", nargs="+", default=["smtp-persistent", "http"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.postgres:
        args.dsn = throwaway_database()
    rail = Rail(args.workdir, args.dsn)
    try:
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes:
                for workers in args.workers:
                    print(f"round {round_}  " + one_run(rail, args, workers, mode), flush=True)
    finally:
        rail.close(args.keep)


if __name__ == "__main__":
    main()
