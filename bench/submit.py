"""Submission benchmark: concurrent mTLS clients against a running Rail; prints figures.

Run by hand (never by the test suite); bench/README.md has the usage and the targets.
The client shares the machine with the server, so it is written to be cheap: one asyncio
loop, the stdlib ``ssl`` module, pipelined SMTP and hand-written keep-alive HTTP/1.1,
messages built once and sent many times.

    python bench/submit.py --start --mode smtp-persistent
    python bench/submit.py --config var/rail.yaml --pid "$(pgrep -f 'twistd.*rail')" --mode http
    python bench/submit.py --start --mode http-batch --batch 100 --clients 4 --messages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs

MODES = ("smtp-persistent", "smtp-per-connection", "http", "http-batch")
_BIN = Path(sys.executable).parent
_MB = 1024 * 1024
# Bounds every step (connect, handshake, one message) so a stuck server ends the run.
_STEP_TIMEOUT = 30.0
_PROGRESS_EVERY = 5.0


class _ReplyError(Exception):
    """The server refused a message; ``code`` is the reply code that counted."""

    def __init__(self, code: int, line: bytes) -> None:
        super().__init__(line.decode("utf-8", "replace").strip())
        self.code = code


@attrs.frozen
class Target:
    host: str
    smtp_port: int
    https_port: int
    ca: Path
    cert: Path
    key: Path
    sender: str
    recipient: str
    server_name: str

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@attrs.frozen
class ProcSample:
    """A server process's CPU time and memory, read from /proc."""

    cpu_seconds: float
    peak_rss_kb: int
    rss_kb: int


def proc_sample(pid: int) -> ProcSample:
    # Fields after the command name, which may itself contain spaces and parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime, all threads
    memory = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            memory[name] = int(value.split()[0])
    return ProcSample(cpu, memory.get("VmHWM", 0), memory.get("VmRSS", 0))


class Work:
    """Hands out message numbers to the clients and paces them to ``rate`` msg/s."""

    def __init__(self, total: int, rate: float | None) -> None:
        self.total = total
        self._next = 0
        self._rate = rate
        self._start = time.perf_counter()

    def take(self) -> int | None:
        if self._next >= self.total:
            return None
        self._next += 1
        return self._next - 1

    async def pace(self, index: int) -> None:
        if self._rate:
            delay = self._start + index / self._rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sessions: list[float] = []
        self.errors: Counter[str] = Counter()

    def error(self, problem: BaseException | str) -> None:
        if isinstance(problem, _ReplyError):
            key = str(problem.code)
        elif isinstance(problem, str):
            key = problem
        else:
            key = type(problem).__name__
        self.errors[key] += 1


# -- messages -----------------------------------------------------------------------------


def _padding(length: int) -> bytes:
    """``length`` bytes of CRLF text lines that never need dot-stuffing (and compress
    to almost nothing: see :func:`random_padding`)."""
    line = b"x" * 76 + b"\r\n"
    count, rest = divmod(max(length, 0), len(line))
    tail = b"x" * max(rest - 2, 0) + b"\r\n" if rest >= 2 else b""
    return line * count + tail


def random_padding(length: int) -> bytes:
    """``length`` bytes of CRLF lines of random base64 text (no dots), which no engine's
    compression shrinks: what an attachment looks like to the store."""
    text = base64.b64encode(os.urandom(length)).replace(b"+", b"A").replace(b"/", b"B")
    lines = [text[i : i + 76] + b"\r\n" for i in range(0, length, 78)]
    body = b"".join(lines)[: max(length - 2, 0)]
    return body.rstrip(b"\r") + b"\r\n" if length >= 2 else b""


Padding = Callable[[int], bytes]


def smtp_message(target: Target, size: int, padding: Padding = _padding) -> bytes:
    """A message of about ``size`` bytes, already framed for DATA."""
    head = (
        f"From: <{target.sender}>\r\n"
        f"To: <{target.recipient}>\r\n"
        "Subject: Rail submission benchmark\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")
    return head + padding(size - len(head)) + b".\r\n"


def http_request(target: Target, size: int, batch: int = 0, padding: Padding = _padding) -> bytes:
    """A keep-alive POST /api/v1/send whose message is about ``size`` bytes; with
    ``batch``, a POST /api/v1/send/batch of that many such messages."""
    # The header section Rail builds (From, To, Date, Message-ID, MIME) is about 270 bytes.
    text = padding(size - 270).decode("ascii").replace("\r\n", "\n")
    message = {
        "from": target.sender,
        "to": [target.recipient],
        "subject": "Rail submission benchmark",
        "body_text": text,
    }
    document = {"messages": [message] * batch} if batch else message
    body = json.dumps(document).encode("utf-8")
    path = "/api/v1/send/batch" if batch else "/api/v1/send"
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {target.server_name}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("ascii")
    return head + body


# -- SMTP -----------------------------------------------------------------------------------


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multi-line) reply: its code and last line."""
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


class SMTPSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: Target, context: ssl.SSLContext) -> SMTPSession:
        reader, writer = await asyncio.open_connection(
            target.host, target.smtp_port, ssl=context, server_hostname=target.server_name
        )
        session = cls(reader, writer)
        try:
            await session._expect(220)
            writer.write(b"EHLO bench.rail.test\r\n")
            await session._expect(250)
        except BaseException:
            session.abort()
            raise
        return session

    async def _expect(self, code: int) -> None:
        got, line = await _reply(self.reader)
        if got != code:
            raise _ReplyError(got, line)

    async def send(self, envelope: bytes, message: bytes) -> None:
        """MAIL, RCPT and DATA in one write (PIPELINING), then the message."""
        self.writer.write(envelope)
        replies = [await _reply(self.reader) for _ in range(3)]
        if replies[2][0] != 354:
            self.writer.write(b"RSET\r\n")
            await _reply(self.reader)
            code, line = next((r for r in replies if r[0] >= 400), replies[2])
            raise _ReplyError(code, line)
        self.writer.write(message)
        await self._expect(250)

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await _reply(self.reader)
        self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()


async def smtp_client(
    target: Target,
    context: ssl.SSLContext,
    work: Work,
    stats: Stats,
    message: bytes,
    per_connection: bool,
) -> None:
    envelope = (
        f"MAIL FROM:<{target.sender}> SIZE={len(message)}\r\n"
        f"RCPT TO:<{target.recipient}>\r\n"
        "DATA\r\n"
    ).encode("ascii")
    session: SMTPSession | None = None
    while (index := work.take()) is not None:
        await work.pace(index)
        opened = time.perf_counter()
        try:
            async with asyncio.timeout(_STEP_TIMEOUT):
                if session is None:
                    session = await SMTPSession.open(target, context)
                started = time.perf_counter()
                await session.send(envelope, message)
                done = time.perf_counter()
                stats.latencies.append(done - started)
                if per_connection:
                    stats.sessions.append(done - opened)
                    await session.quit()
                    session = None
        except _ReplyError as e:
            stats.error(e)
            if per_connection and session is not None:
                session.abort()
                session = None
        except (OSError, EOFError, ConnectionError, TimeoutError, ssl.SSLError) as e:
            stats.error(e)
            if session is not None:
                session.abort()
                session = None
            await asyncio.sleep(0.05)
    if session is not None:
        with contextlib.suppress(OSError, ConnectionError, TimeoutError, EOFError):
            async with asyncio.timeout(_STEP_TIMEOUT):
                await session.quit()


# -- HTTP -----------------------------------------------------------------------------------


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        body = b"".join(chunks)
    else:
        body = await reader.read()
        headers[b"connection"] = b"close"
    return status, headers, body


def _accepted_in(status: int, body: bytes, batch: int) -> int:
    """How many messages an answer accepted: a 202, or the 202 items of a batch's 200."""
    if not batch:
        return 1 if status == 202 else 0
    if status != 200:
        return 0
    return sum(1 for item in json.loads(body)["results"] if item["status"] == 202)


async def http_client(
    target: Target,
    context: ssl.SSLContext,
    work: Work,
    stats: Stats,
    request: bytes,
    batch: int = 0,
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (index := work.take()) is not None:
        await work.pace(index)
        try:
            async with asyncio.timeout(_STEP_TIMEOUT):
                if connection is None:
                    connection = await asyncio.open_connection(
                        target.host,
                        target.https_port,
                        ssl=context,
                        server_hostname=target.server_name,
                    )
                reader, writer = connection
                started = time.perf_counter()
                writer.write(request)
                status, headers, body = await _response(reader)
                accepted = _accepted_in(status, body, batch)
                # Each message of a batch waited as long as its request.
                stats.latencies += [time.perf_counter() - started] * accepted
                for _ in range(max(batch, 1) - accepted):
                    stats.error(str(status))
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.transport.abort()
                    connection = None
        except (OSError, EOFError, ConnectionError, TimeoutError, ssl.SSLError, ValueError) as e:
            stats.error(e)
            if connection is not None:
                connection[1].transport.abort()
                connection = None
            await asyncio.sleep(0.05)
    if connection is not None:
        connection[1].transport.abort()


# -- running --------------------------------------------------------------------------------


async def _progress(work: Work, stats: Stats) -> None:
    began = time.perf_counter()
    while True:
        await asyncio.sleep(_PROGRESS_EVERY)
        done = len(stats.latencies)
        rate = done / (time.perf_counter() - began)
        failed = sum(stats.errors.values())
        print(
            f"  ... {done}/{work.total} accepted, {failed} failed, {rate:.0f} msg/s",
            file=sys.stderr,
        )


async def run_load(
    target: Target,
    mode: str,
    clients: int,
    messages: int,
    size: int,
    rate: float | None,
    batch: int = 0,
) -> tuple[Stats, float]:
    context = target.tls_context()
    stats = Stats()
    if mode == "http-batch":
        # One unit of work is one request of ``batch`` messages.
        work = Work(math.ceil(messages / batch), rate / batch if rate else None)
        request = http_request(target, size, batch)
        jobs = [http_client(target, context, work, stats, request, batch) for _ in range(clients)]
    elif mode == "http":
        work = Work(messages, rate)
        request = http_request(target, size)
        jobs = [http_client(target, context, work, stats, request) for _ in range(clients)]
    else:
        work = Work(messages, rate)
        message = smtp_message(target, size)
        per_connection = mode == "smtp-per-connection"
        jobs = [
            smtp_client(target, context, work, stats, message, per_connection)
            for _ in range(clients)
        ]
    progress = asyncio.create_task(_progress(work, stats))
    began = time.perf_counter()
    try:
        await asyncio.gather(*jobs)
    finally:
        progress.cancel()
    return stats, time.perf_counter() - began


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))]


def report(
    *,
    mode: str,
    clients: int,
    messages: int,
    size: int,
    rate: float | None,
    stats: Stats,
    elapsed: float,
    client_cpu: float,
    before: ProcSample | None,
    after: ProcSample | None,
) -> str:
    accepted = len(stats.latencies)
    latencies = sorted(stats.latencies)
    ms = 1000.0
    lines = [
        f"mode          {mode}",
        f"clients       {clients}" + (f", rate capped at {rate:g} msg/s" if rate else ""),
        f"messages      {messages} of ~{size} bytes: {accepted} accepted,"
        f" {messages - accepted} failed",
        f"elapsed       {elapsed:.2f} s",
        f"throughput    {accepted / elapsed:.0f} msg/s accepted",
        f"latency       p50 {percentile(latencies, 0.5) * ms:.1f} ms,"
        f" p99 {percentile(latencies, 0.99) * ms:.1f} ms,"
        f" max {(latencies[-1] if latencies else math.nan) * ms:.1f} ms"
        + (
            " (HTTP request to 202)"
            if mode == "http"
            else " (batch request to its 200, per message)"
            if mode == "http-batch"
            else " (MAIL to the 250 after DATA)"
        ),
    ]
    if stats.sessions:
        sessions = sorted(stats.sessions)
        lines.append(
            f"session       p50 {percentile(sessions, 0.5) * ms:.1f} ms,"
            f" p99 {percentile(sessions, 0.99) * ms:.1f} ms (connect + handshake to 250)"
        )
    per = accepted or messages
    if before is not None and after is not None:
        cpu = after.cpu_seconds - before.cpu_seconds
        lines += [
            f"server CPU    {cpu / per * ms:.3f} ms/message ({cpu:.2f} s in all)",
            f"server RSS    peak {after.peak_rss_kb / 1024:.1f} MB (VmHWM;"
            f" {before.peak_rss_kb / 1024:.1f} MB before), now {after.rss_kb / 1024:.1f} MB",
        ]
    else:
        lines.append("server        not measured (give --pid, or use --start)")
    lines.append(f"client CPU    {client_cpu / per * ms:.3f} ms/message ({client_cpu:.2f} s)")
    errors = ", ".join(f"{key}: {count}" for key, count in stats.errors.most_common())
    lines.append(f"errors        {errors or 'none'}")
    return "\n".join(lines)


# -- targets and --start --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _sender_of(cert: Path) -> str:
    from cryptography import x509

    from rail.pki.inspect import certificate_identity

    _, senders, _ = certificate_identity(x509.load_pem_x509_certificate(cert.read_bytes()))
    if not senders:
        raise SystemExit(f"submit.py: {cert} names no sender address; give --sender")
    return senders[0]


def target_from(args: argparse.Namespace) -> Target:
    """Explicit flags win over what ``--config`` says (ports, CA, the dev app certificate)."""
    host, smtp_port, https_port = args.host, args.smtp_port, args.https_port
    ca, cert, key = args.ca, args.cert, args.key
    if args.config is not None:
        from rail.config import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as e:
            raise SystemExit("\n".join(f"submit.py: {p}" for p in e.problems)) from None
        directory = args.config.parent
        listen = config.listen
        if smtp_port is None and listen.submission is not None:
            smtp_port = listen.submission.port
        if https_port is None and listen.https is not None:
            https_port = listen.https.port
        if host is None:
            spec = listen.submission or listen.https
            host = "127.0.0.1"
            if spec is not None and not ipaddress.ip_address(spec.interface).is_unspecified:
                host = spec.interface
        ca = ca or next(
            (p for p in (directory / "ca.crt", config.data_dir / "ca" / "ca.crt") if p.exists()),
            directory / "ca.crt",
        )
        cert = cert or directory / "app.crt"
        key = key or directory / "app.key"
    if None in (ca, cert, key):
        raise SystemExit("submit.py: give --config, or --ca, --cert and --key")
    host = host or "127.0.0.1"
    if (https_port if args.mode.startswith("http") else smtp_port) is None:
        raise SystemExit(f"submit.py: no port for --mode {args.mode}; give it or --config")
    return Target(
        host=host,
        smtp_port=smtp_port or 0,
        https_port=https_port or 0,
        ca=Path(ca),
        cert=Path(cert),
        key=Path(key),
        sender=args.sender or _sender_of(Path(cert)),
        recipient=args.to,
        server_name=args.server_name or host,
    )


def _wait_for(ports: list[int], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    waiting = list(ports)
    while waiting:
        if process.poll() is not None:
            raise SystemExit(f"submit.py: twistd exited ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"submit.py: nothing listening on {waiting}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", waiting[0])) == 0:
                waiting.pop(0)
                continue
        time.sleep(0.1)


class StartedRail:
    """``rail init --dev`` into a temporary directory, and ``twistd rail`` run on it."""

    def __init__(self, workdir: str | None, keep: bool, storage: str = "sqlite") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rail-bench-", dir=workdir))
        self.config = self.directory / "dev" / "rail.yaml"
        self._ports = [_free_port(), _free_port()]
        self._keep = keep
        self._log = self.directory / "twistd.log"
        self._process: subprocess.Popen[bytes] | None = None
        rail = str(_BIN / "rail") if (_BIN / "rail").exists() else shutil.which("rail") or "rail"
        init = [rail, "init", "--dev", str(self.config.parent)]
        ports = ["--https-port", str(self._ports[0]), "--submission-port", str(self._ports[1])]
        subprocess.run([*init, *ports], check=True, stdout=subprocess.DEVNULL)
        if storage == "postgresql":
            self._use_postgresql()

    def _use_postgresql(self) -> None:
        """Put the queue in a fresh database of a throwaway PostgreSQL cluster (or of the
        server ``RAIL_TEST_PG_DSN`` names), as ``tests/support/postgres.py`` makes them."""
        import psycopg
        import yaml

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.postgres import cluster_dsn

        server, name = cluster_dsn(), f"rail_bench_{os.getpid()}"
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        document = yaml.safe_load(self.config.read_text())
        dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
        document.setdefault("storage", {}).update({"backend": "postgresql", "dsn": dsn})
        self.config.write_text(yaml.safe_dump(document))

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        twistd = str(_BIN / "twistd") if (_BIN / "twistd").exists() else "twistd"
        with self._log.open("ab") as output:
            self._process = subprocess.Popen(
                [twistd, "-n", "--pidfile=", "rail", "--config", str(self.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        _wait_for(self._ports, self._process, self._log)
        print(f"started twistd rail (pid {self.pid}) in {self.config.parent}", file=sys.stderr)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        if self._keep:
            print(f"kept {self.directory} (log: {self._log})", file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit messages to a running Rail over mTLS and print throughput,"
        " latency and the server's CPU and memory."
    )
    where = parser.add_argument_group("server")
    where.add_argument("--config", type=Path, help="a dev set-up's rail.yaml (rail init --dev)")
    where.add_argument("--start", action="store_true", help="rail init --dev + twistd, then run")
    where.add_argument("--workdir", help="where --start makes its temporary directory")
    where.add_argument("--keep", action="store_true", help="keep the --start directory")
    where.add_argument(
        "--storage",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="--start's queue: sqlite, or a fresh database of a throwaway PostgreSQL cluster",
    )
    where.add_argument("--host")
    where.add_argument("--smtp-port", type=int)
    where.add_argument("--https-port", type=int)
    where.add_argument("--server-name", help="name to verify in the server certificate")
    where.add_argument("--ca", type=Path)
    where.add_argument("--cert", type=Path)
    where.add_argument("--key", type=Path)
    where.add_argument("--sender", help="MAIL FROM / from (default: the certificate's first)")
    where.add_argument("--to", default="bench@example.com", help="recipient address")
    where.add_argument("--pid", type=int, help="server pid, for its CPU time and peak RSS")
    load = parser.add_argument_group("load")
    load.add_argument("--mode", choices=MODES, default="smtp-persistent")
    load.add_argument("--clients", type=int, default=20)
    load.add_argument("--messages", type=int, default=10000)
    load.add_argument("--size", type=int, default=2048, help="message size in bytes")
    load.add_argument("--rate", type=float, help="cap on msg/s across all clients")
    load.add_argument(
        "--batch", type=int, default=100, help="messages per request in http-batch (1 to 500)"
    )
    load.add_argument(
        "--fill",
        type=int,
        metavar="N",
        help="queue N messages as fast as smtp-persistent allows, then report peak RSS",
    )
    args = parser.parse_args(argv)
    if args.fill is not None:
        args.mode, args.messages, args.rate = "smtp-persistent", args.fill, None
    if args.start and (args.config or args.pid):
        parser.error("--start runs its own server: leave out --config and --pid")
    if args.clients < 1 or args.messages < 1:
        parser.error("--clients and --messages must be positive")
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be from 1 to 500")
    return args


def bench(args: argparse.Namespace) -> None:
    target = target_from(args)
    before = proc_sample(args.pid) if args.pid else None
    cpu_before = time.process_time()
    stats, elapsed = asyncio.run(
        run_load(
            target,
            args.mode,
            args.clients,
            args.messages,
            args.size,
            args.rate,
            args.batch if args.mode == "http-batch" else 0,
        )
    )
    client_cpu = time.process_time() - cpu_before
    after = proc_sample(args.pid) if args.pid else None
    print(
        report(
            mode=args.mode if args.fill is None else f"fill ({args.mode})",
            clients=args.clients,
            messages=args.messages,
            size=args.size,
            rate=args.rate,
            stats=stats,
            elapsed=elapsed,
            client_cpu=client_cpu,
            before=before,
            after=after,
        )
    )


def restarted_memory(rail: StartedRail) -> str:
    """Restart the server on the queue just filled: what it costs to start with it."""
    rail.stop()
    rail.start()
    time.sleep(2.0)
    sample = proc_sample(rail.pid)
    return (
        f"restarted     peak {sample.peak_rss_kb / 1024:.1f} MB (VmHWM) after starting"
        f" on the filled queue, {sample.cpu_seconds:.2f} s CPU to start"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.start:
        bench(args)
        return
    rail = StartedRail(args.workdir, args.keep, args.storage)
    try:
        rail.start()
        args.config, args.pid = rail.config, rail.pid
        bench(args)
        if args.fill is not None:
            print(restarted_memory(rail))
    finally:
        rail.close()


if __name__ == "__main__":
    main()
