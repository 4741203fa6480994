"""Reactor lag soak: a large queue, and everything that used to pause the reactor.

Run by hand (never by the test suite); bench/README.md has the usage and the targets.
It makes a ``rail init --dev`` set-up in a temporary directory, writes ``--messages``
messages straight into its queue database (mostly delivered, ``--pending`` of them
deferred until tomorrow, so the oldest-pending scan has a whole table to cover), starts
``twistd rail`` on it with delivery going to an SMTP sink in this process, and for
``--duration`` seconds keeps it busy with

- ``/stats`` at ``--stats-rate`` requests per second over keep-alive HTTPS,
- a UDP DNS query every ``--dns-interval`` (its round trip is a second view of the lag),
- one submitted message per second over SMTPS (accepted, signed, delivered to the sink),
- the DNS zone refreshes Rail runs every 60 s by itself,
- a SIGHUP, then ``rail dkim rotate`` + SIGHUP, then a client certificate for a new
  domain and a message through it (the domain's first: its DKIM keys are made then),

then prints ``rail_reactor_lag_seconds`` over the run (from ``/metrics``: its histogram,
and the worst one-minute maximum and p99 ``/stats`` showed), against the targets
p99 < 5 ms and max < 50 ms.

    python bench/soak.py                                   # 1,000,000 messages, 10 minutes
    python bench/soak.py --messages 50000 --duration 120   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

_BIN = Path(sys.executable).parent
_STEP_TIMEOUT = 30.0
_DAY = 86400.0
_TARGET_P99 = 0.005
_TARGET_MAX = 0.050


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rail_command() -> list[str]:
    rail = _BIN / "rail"
    if rail.exists():
        return [str(rail)]
    return [sys.executable, "-c", "import sys; from rail.cli import main; sys.exit(main())"]


def _twistd_command() -> list[str]:
    twistd = _BIN / "twistd"
    return [str(twistd)] if twistd.exists() else [sys.executable, "-m", "twisted"]


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


# -- the set-up and the queue ---------------------------------------------------------------


class SetUp:
    """A ``rail init --dev`` directory, reconfigured for the soak."""

    def __init__(self, workdir: str | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rail-soak-", dir=workdir))
        self.dev = self.directory / "dev"
        self.config = self.dev / "rail.yaml"
        self.ports = {
            name: _free_port() for name in ("https", "submission", "dns", "inbound", "http")
        }
        self.sink_port = _free_port()
        self.log = self.directory / "twistd.log"

    def init(self) -> None:
        ports = [arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port))]
        subprocess.run(
            [*_rail_command(), "init", "--dev", str(self.dev), *ports],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        document = yaml.safe_load(self.config.read_text())
        delivery = document.setdefault("delivery", {})
        delivery["hold"] = False
        delivery["smarthost"] = {
            "host": "127.0.0.1",
            "port": self.sink_port,
            "tls": "opportunistic",
        }
        # The probe asks the same question 100 times a second from one address.
        document.setdefault("dns", {})["rate_limit"] = {"responses_per_second": 0}
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def queue(self) -> Path:
        return self.dev / "data" / "queue"


def fill(queue: Path, messages: int, pending: float, size: int, now: float) -> float:
    """Write ``messages`` messages with one recipient each, as Rail's writer would have
    left them: delivered over the last 30 days, except a ``pending`` fraction deferred
    until tomorrow. Returns the seconds it took."""
    from rail.store.ids import new_message_id
    from rail.store.schema import open_writable

    started = time.perf_counter()
    connection = open_writable(queue)
    connection.execute("PRAGMA synchronous=OFF")
    rng = random.Random(15)
    body = (b"x" * 76 + b"\r\n") * max(1, (size - 200) // 78)
    batch = 20_000
    every = max(1, round(1 / pending)) if pending > 0 else 0
    try:
        for start in range(0, messages, batch):
            rows, recipients = [], []
            for n in range(start, min(messages, start + batch)):
                is_pending = every and n % every == 0
                received = now - (rng.random() * _DAY if is_pending else rng.random() * 30 * _DAY)
                message_id = new_message_id(received)
                data = (
                    f"From: <app@rail.test>\r\nTo: <soak{n}@example.com>\r\n"
                    f"Subject: soak {n}\r\nMessage-ID: <{message_id}@rail.test>\r\n\r\n"
                ).encode() + body
                digest = hashlib.sha256(data).hexdigest()
                rows.append((message_id, received, len(data), digest, data))
                if is_pending:
                    recipients.append(
                        (
                            message_id,
                            f"soak{n}@example.com",
                            "deferred",
                            1,
                            now + _DAY,
                            "451 4.7.1 try again later",
                            received + 60,
                        )
                    )
                else:
                    recipients.append(
                        (
                            message_id,
                            f"soak{n}@example.com",
                            "sent",
                            1,
                            None,
                            "250 2.0.0 ok",
                            received + 2,
                        )
                    )
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit,"
                " received_at, size, sha256, data)"
                " VALUES (?, 'app', 'app@rail.test', 'smtp', 0, 0, ?, ?, ?, ?)",
                rows,
            )
            connection.executemany(
                "INSERT INTO recipients (message_id, idx, address, status, attempts,"
                " next_attempt_at, last_reply, updated_at, remote_mta)"
                " VALUES (?, 0, ?, ?, ?, ?, ?, ?, '127.0.0.1')",
                recipients,
            )
            connection.execute("COMMIT")
            print(f"  filled {min(messages, start + batch):,}", end="\r", file=sys.stderr)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    print(file=sys.stderr)
    return time.perf_counter() - started


# -- the SMTP sink Rail delivers to ----------------------------------------------------------


class Sink:
    """Accepts every message; remembers the DKIM ``d=`` of each and counts them."""

    def __init__(self) -> None:
        self.messages = 0
        self.signed_by: list[str] = []

    async def serve(self, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._session, "127.0.0.1", port)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-sink\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    data = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk
                    self.messages += 1
                    match = re.search(rb"DKIM-Signature:[^:]*?\bd=([^;\s]+)", bytes(data))
                    if match:
                        self.signed_by.append(match[1].decode())
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


# -- load -----------------------------------------------------------------------------------


async def _http_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: status and body (Content-Length or chunked)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return status, bytes(body)
        body += await reader.readexactly(size)
        await reader.readline()


class StatsLoad:
    """``/stats`` at a fixed rate over keep-alive connections. The worst of the lag
    figures (the p99 and maximum of the last minute of probes) is kept from the responses
    received from ``count_from`` on: with a run of a minute or more, those windows cover
    the run and nothing before it."""

    def __init__(self, port: int, context: ssl.SSLContext, rate: float) -> None:
        self._port = port
        self._context = context
        self._rate = rate
        self.count_from = math.inf
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.skipped = 0
        self.worst_max = 0.0
        self.worst_p99 = 0.0

    async def run(self, until: float) -> None:
        connections = max(1, math.ceil(self._rate / 25))
        slots = iter(range(10**12))
        started = time.monotonic()
        await asyncio.gather(*(self._client(slots, started, until) for _ in range(connections)))

    async def get(self, path: str) -> bytes:
        """One request on a fresh connection (for /metrics)."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self._port, ssl=self._context, server_hostname="127.0.0.1"
        )
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: rail.test\r\n\r\n".encode())
            status, body = await asyncio.wait_for(_http_response(reader), _STEP_TIMEOUT)
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}: {body[:200]!r}")
            return body
        finally:
            writer.close()

    async def _client(self, slots: Any, started: float, until: float) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while True:
            due = started + next(slots) / self._rate
            now = time.monotonic()
            if due >= until:
                break
            if due - now > 0:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:
                self.skipped += 1  # the server (or this client) fell behind: no burst
                continue
            try:
                if connection is None:
                    connection = await asyncio.wait_for(
                        asyncio.open_connection(
                            "127.0.0.1", self._port, ssl=self._context, server_hostname="127.0.0.1"
                        ),
                        _STEP_TIMEOUT,
                    )
                reader, writer = connection
                sent = time.monotonic()
                writer.write(b"GET /stats HTTP/1.1\r\nHost: rail.test\r\n\r\n")
                status, body = await asyncio.wait_for(_http_response(reader), _STEP_TIMEOUT)
                self.latencies.append(time.monotonic() - sent)
                if status != 200:
                    self._error(f"HTTP {status}")
                    continue
                if time.monotonic() < self.count_from:
                    continue
                lag = json.loads(body).get("reactor_lag_seconds") or {}
                self.worst_max = max(self.worst_max, lag.get("max") or 0.0)
                self.worst_p99 = max(self.worst_p99, lag.get("p99") or 0.0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                self._error(type(e).__name__)
                if connection is not None:
                    connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    def _error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


class DNSProbe(asyncio.DatagramProtocol):
    """An A query for the zone apex every ``interval``; round trips and losses."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._sent: dict[int, float] = {}
        self._transport: Any = None
        self.round_trips: list[float] = []
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        (query_id,) = struct.unpack("!H", data[:2])
        sent = self._sent.pop(query_id, None)
        if sent is not None:
            self.round_trips.append(time.monotonic() - sent)

    @property
    def lost(self) -> int:
        return len(self._sent)

    async def run(self, until: float) -> None:
        labels = b"".join(bytes([len(p)]) + p for p in (b"rail", b"test"))
        question = labels + b"\0" + struct.pack("!HH", 1, 1)  # A, IN
        started = time.monotonic()
        while (due := started + self.queries * self._interval) < until:
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            query_id = self.queries % 65536
            self.queries += 1
            self._sent[query_id] = time.monotonic()
            self._transport.sendto(struct.pack("!HHHHHH", query_id, 0, 1, 0, 0, 0) + question)
        await asyncio.sleep(1.0)  # the last answers


async def _smtp_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def send(port: int, context: ssl.SSLContext, sender: str, count: int = 1) -> int:
    """Submit ``count`` messages from ``sender`` in one SMTPS session; how many got 250."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    accepted = 0
    try:
        await _smtp_reply(reader)
        writer.write(b"EHLO soak.rail.test\r\n")
        await _smtp_reply(reader)
        for n in range(count):
            message = (
                f"From: <{sender}>\r\nTo: <soak@example.com>\r\nSubject: soak live {n}\r\n\r\n"
                "hello\r\n.\r\n"
            ).encode()
            writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<soak@example.com>\r\nDATA\r\n".encode())
            codes = [await _smtp_reply(reader) for _ in range(3)]
            if codes[2] != 354:
                continue
            writer.write(message)
            if await _smtp_reply(reader) == 250:
                accepted += 1
        writer.write(b"QUIT\r\n")
        await _smtp_reply(reader)
    finally:
        writer.close()
    return accepted


# -- the run ---------------------------------------------------------------------------------


def _histogram(metrics: bytes) -> dict[float, float]:
    """Cumulative ``rail_reactor_lag_seconds`` bucket counts by upper bound."""
    buckets = {}
    for line in metrics.decode().splitlines():
        match = re.match(r'rail_reactor_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if match:
            buckets[math.inf if match[1] == "+Inf" else float(match[1])] = float(match[2])
    return buckets


def _lag_report(
    before: dict[float, float], after: dict[float, float]
) -> tuple[float, float, float, int]:
    """From the histogram over the run: the bucket bounds under which 99% and all of
    its probes fell, the fraction within 5 ms, and the number of probes."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(math.inf, 0.0)
    if not total:
        return math.nan, math.nan, math.nan, 0
    p99 = next(bound for bound, count in counts.items() if count >= 0.99 * total)
    highest = next(bound for bound, count in counts.items() if count >= total)
    return p99, highest, counts.get(_TARGET_P99, math.nan) / total, int(total)


async def _run_command(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {process.returncode}\n{output.decode()}")


async def _wait_for_ports(ports: list[int], process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 300
    for port in ports:
        while True:
            if process.returncode is not None:
                raise SystemExit(f"soak.py: twistd exited:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"soak.py: nothing listening on {port}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.2)


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        line = f"  {time.monotonic() - self.started:6.1f} s  {text}"
        self.lines.append(line)
        print(line, file=sys.stderr)


async def soak(args: argparse.Namespace, setup: SetUp) -> str:
    sink = Sink()
    server = await sink.serve(setup.sink_port)
    with setup.log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *_twistd_command(),
            "-n",
            "--pidfile=",
            "rail",
            "--config",
            str(setup.config),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            cwd=setup.directory,
        )
    try:
        started = time.monotonic()
        await _wait_for_ports([setup.ports["https"], setup.ports["submission"]], process, setup.log)
        print(
            f"twistd rail up in {time.monotonic() - started:.1f} s (pid {process.pid})",
            file=sys.stderr,
        )
        return await _measure(args, setup, sink, process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
        server.close()


async def _measure(
    args: argparse.Namespace, setup: SetUp, sink: Sink, process: asyncio.subprocess.Process
) -> str:
    ca = str(setup.dev / "ca.crt")
    https = ssl.create_default_context(cafile=ca)
    app = ssl.create_default_context(cafile=ca)
    app.load_cert_chain(str(setup.dev / "app.crt"), str(setup.dev / "app.key"))
    load = StatsLoad(setup.ports["https"], https, args.stats_rate)
    await asyncio.sleep(args.warmup)
    before = _histogram(await load.get("/metrics"))
    loop = asyncio.get_running_loop()
    probe = DNSProbe(args.dns_interval)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: probe, remote_addr=("127.0.0.1", setup.ports["dns"])
    )
    timeline = Timeline()
    until = time.monotonic() + args.duration
    load.count_from = time.monotonic() + min(60.0, args.duration)
    rail = [*_rail_command()]
    config = str(setup.config)
    new_domain = f"new{random.randrange(10**6)}.example"
    live = {"accepted": 0}

    async def trickle() -> None:
        while time.monotonic() < until - 2:
            with contextlib.suppress(OSError, ConnectionError, asyncio.TimeoutError):
                live["accepted"] += await asyncio.wait_for(
                    send(setup.ports["submission"], app, "app@rail.test"), _STEP_TIMEOUT
                )
            await asyncio.sleep(1.0)

    async def events() -> None:
        duration = args.duration
        await asyncio.sleep(0.15 * duration)
        process.send_signal(signal.SIGHUP)
        timeline.note("SIGHUP")
        await asyncio.sleep(0.2 * duration)
        await _run_command(*rail, "dkim", "rotate", "--config", config, "rail.test")
        process.send_signal(signal.SIGHUP)
        timeline.note("rail dkim rotate rail.test + SIGHUP")
        await asyncio.sleep(0.2 * duration)
        out = setup.directory / "newclient"
        out.mkdir()
        await _run_command(
            *rail,
            "certs",
            "issue",
            "--config",
            config,
            "--name",
            "newclient",
            "--email",
            f"soak@{new_domain}",
            "--out",
            str(out),
        )
        timeline.note(f"rail certs issue for soak@{new_domain}")
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(str(out / "newclient.crt"), str(out / "newclient.key"))
        accepted = await send(setup.ports["submission"], context, f"soak@{new_domain}")
        timeline.note(f"first message from {new_domain}: {'accepted' if accepted else 'REFUSED'}")

    try:
        # A failing part (an event's command) stops the others at once.
        async with asyncio.TaskGroup() as group:
            for part in (load.run(until), probe.run(until), trickle(), events()):
                group.create_task(part)
    finally:
        transport.close()
    after = _histogram(await load.get("/metrics"))
    machine = Path("/proc/loadavg").read_text().split()[:3]
    p99, highest, within, probes = _lag_report(before, after)
    reloads = setup.log.read_bytes().count(b"reload done")
    stats = sorted(load.latencies)
    trips = sorted(probe.round_trips)
    verdict = "PASS" if p99 <= _TARGET_P99 and highest <= _TARGET_MAX else "FAIL"
    lines = [
        f"queue         {args.messages:,} messages ({args.pending:.0%} pending),"
        f" ~{args.size} bytes each",
        f"run           {args.duration:.0f} s, after {args.warmup:.0f} s of warm-up",
        "events:",
        *timeline.lines,
        f"reactor lag   histogram over the run: {probes} probes, p99 <= {_ms(p99)},"
        f" all <= {_ms(highest)}, {within:.2%} within 5 ms  [{verdict}: p99 < 5 ms,"
        " max < 50 ms]",
        f"              /stats, worst one-minute window: max {_ms(load.worst_max)},"
        f" p99 {_ms(load.worst_p99)}",
        f"DNS probe     {probe.queries} queries, {probe.lost} unanswered; round trip"
        f" p50 {_ms(_percentile(trips, 0.5))}, p99 {_ms(_percentile(trips, 0.99))},"
        f" max {_ms(trips[-1] if trips else None)}",
        f"/stats        {len(stats)} answered ({len(stats) / args.duration:.1f}/s of"
        f" {args.stats_rate:g}/s asked, {load.skipped} skipped when late); latency"
        f" p50 {_ms(_percentile(stats, 0.5))}, p99 {_ms(_percentile(stats, 0.99))},"
        f" max {_ms(stats[-1] if stats else None)}; errors {load.errors or 'none'}",
        f"mail          {live['accepted']} submitted and accepted; the sink got"
        f" {sink.messages}; {new_domain} signed: {new_domain in sink.signed_by}",
        f"reloads       {reloads} 'reload done' in the log",
        f"machine       load average {' '.join(machine)} at the end ({os.cpu_count()} CPUs)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fill a queue, run twistd rail on it under reloads, rotations, a new"
        " domain and /stats load, and print the reactor's lag."
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the queue")
    parser.add_argument("--pending", type=float, default=0.01, help="fraction still deferred")
    parser.add_argument("--size", type=int, default=1024, help="bytes per stored message")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--stats-rate", type=float, default=100.0, help="/stats requests per s")
    parser.add_argument("--dns-interval", type=float, default=0.01, help="seconds between probes")
    parser.add_argument("--workdir", help="where the temporary directory goes")
    parser.add_argument("--keep", action="store_true", help="keep it (twistd.log, queue)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.duration <= 0 or not 0 <= args.pending <= 1:
        parser.error("--messages and --duration must be positive, --pending within [0, 1]")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup = SetUp(args.workdir)
    try:
        setup.init()
        seconds = fill(setup.queue, args.messages, args.pending, args.size, time.time())
        size = sum(p.stat().st_size for p in setup.queue.iterdir()) / 1024**2
        print(
            f"filled {args.messages:,} messages in {seconds:.1f} s ({size:.0f} MB)", file=sys.stderr
        )
        print(asyncio.run(soak(args, setup)))
    finally:
        if args.keep:
            print(f"kept {setup.directory} (log: {setup.log})", file=sys.stderr)
        else:
            shutil.rmtree(setup.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
