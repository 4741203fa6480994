"""Poison-message benchmark: does one hostile message stall Rail? Prints figures.

Run by hand (never by the test suite). It starts its own Rail (``rail init --dev`` in a
temporary directory, then ``twistd rail``) delivering to a small SMTP sink in this
process through a smarthost, and a probe process that sends a UDP DNS query to Rail's
DNS listener every 10 ms and times each answer: Rail answers DNS on its reactor thread,
so the probe's latency is the reactor's responsiveness. Then, phase by phase:

- ``idle``: the probe alone;
- ``smtps-folds``: a ~1.6 MB message whose one header field has 400,000 continuation
  lines, over SMTPS (465, mTLS);
- ``smtps-subject``: a message with a 10 MB Subject (folded over 78-octet lines);
- ``api-folds``: a send request whose one header value is 400,000 words, which Rail folds;
- ``api-subject``: a send request with a 10 MB ``subject``;
- ``restart``: the two 10 MB Subjects sent again, Rail killed with SIGKILL as soon as
  both are acknowledged and started again on the same data directory, where it reads,
  signs and delivers what it had queued; probed throughout (the queries sent while no
  Rail is running count as unanswered).

Each phase prints the probe's p50, p99 and max latency, the queries never answered
(within 2 s), and the answer each hostile message got. With the default
``limits.header_size`` (1 MB) the 400,000-line message and the 10 MB Subjects are refused
at intake (``552 5.3.4``, 413); ``--header-size 64MB`` lets them in, so that their
parsing, composing and signing are measured too.

    python bench/poison.py                        # default limits
    python bench/poison.py --header-size 64MB     # accept them: parse, compose, sign
    python bench/poison.py --scale 0.1            # a smaller smoke run
    python bench/poison.py --header-size 64MB --hold   # intake alone, nothing delivered
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

_BIN = Path(sys.executable).parent
_HOSTNAME = "rail.test"
_SENDER = f"app@{_HOSTNAME}"
_RECIPIENT = "someone@example.org"
_PROBE_EVERY = 0.010
_PROBE_TIMEOUT = 2.0


# -- the probe (a separate process, so that this one's work cannot delay it) -------------


def _dns_query(ident: int) -> bytes:
    """An A query for Rail's host name, without recursion desired."""
    name = b"".join(bytes([len(label)]) + label for label in _HOSTNAME.encode().split(b"."))
    return struct.pack("!HHHHHH", ident, 0, 1, 0, 0, 0) + name + b"\x00" + struct.pack("!HH", 1, 1)


def _probe(port: int, stop: Any, results: Connection) -> None:
    """Query every 10 ms until ``stop`` is set; send back (latencies, unanswered)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    latencies: list[float] = []
    lost = 0
    ident = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        ident = (ident + 1) & 0xFFFF
        sent = time.perf_counter()
        sock.send(_dns_query(ident))
        sock.settimeout(_PROBE_TIMEOUT)
        while True:
            try:
                answer = sock.recv(4096)
            except (TimeoutError, ConnectionRefusedError):
                lost += 1
                break
            if answer[:2] == struct.pack("!H", ident):
                latencies.append(time.perf_counter() - sent)
                break
        next_at = max(next_at + _PROBE_EVERY, time.perf_counter())
        time.sleep(max(0.0, next_at - time.perf_counter()))
    results.send((latencies, lost))
    sock.close()


class Probe:
    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_probe, args=(port, self._stop, send))
        self._process.start()

    def finish(self) -> tuple[list[float], int]:
        self._stop.set()
        latencies, lost = self._receive.recv()
        self._process.join()
        return latencies, lost


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(phase: str, latencies: list[float], lost: int, outcome: str) -> None:
    ms = [value * 1000 for value in latencies]
    print(
        f"{phase:14} probes {len(ms):5}  p50 {_percentile(ms, 0.5):7.2f} ms"
        f"  p99 {_percentile(ms, 0.99):8.2f} ms  max {max(ms, default=0):8.2f} ms"
        f"  unanswered {lost:3}  {outcome}",
        flush=True,
    )


# -- a sink for Rail's deliveries ---------------------------------------------------------


class Sink:
    """Takes every message (no PIPELINING, no STARTTLS) and counts them."""

    def __init__(self) -> None:
        self.received = 0
        self.octets = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink.bench ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink.bench\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.received += 1
                    self.octets += len(data)
                    writer.write(b"250 2.0.0 taken\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()


# -- Rail ---------------------------------------------------------------------------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Rail:
    """``rail init --dev`` in a temporary directory and ``twistd rail`` on it."""

    def __init__(self, header_size: str | None, sink_port: int, keep: bool, hold: bool) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rail-bench-poison-"))
        self.keep = keep
        self.https, self.submission, self.inbound, self.http = (_free_port() for _ in range(4))
        self.dns = _free_port(socket.SOCK_DGRAM)
        self.config = self.directory / "dev" / "rail.yaml"
        ports = {
            "--https-port": self.https,
            "--submission-port": self.submission,
            "--inbound-port": self.inbound,
            "--http-port": self.http,
            "--dns-port": self.dns,
        }
        command = [str(_BIN / "rail"), "init", "--dev", str(self.config.parent)]
        for flag, port in ports.items():
            command += [flag, str(port)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        config = yaml.safe_load(self.config.read_text())
        config["delivery"].update(
            hold=hold,
            smarthost={"host": "127.0.0.1", "port": sink_port, "tls": "opportunistic"},
        )
        config["dns"]["rate_limit"] = {"responses_per_second": 0}
        config["limits"]["http_body_size"] = "100MB"
        if header_size is not None:
            config["limits"]["header_size"] = header_size
        config["shutdown"]["drain_delay"] = "0s"
        self.config.write_text(yaml.safe_dump(config))
        self.log = self.directory / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(_BIN / "twistd"), "-n", "--pidfile=", "rail", "--config", str(self.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + 60
        for port in (self.https, self.submission):
            while True:
                if self.process.poll() is not None:
                    raise SystemExit(f"poison.py: twistd exited; see {self.log}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"poison.py: Rail did not listen; see {self.log}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.keep:
            print(f"kept {self.directory}", file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def tls(self) -> ssl.SSLContext:
        directory = self.config.parent
        context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        context.load_cert_chain(str(directory / "app.crt"), str(directory / "app.key"))
        return context


# -- the hostile messages -----------------------------------------------------------------


def folded_message(lines: int) -> bytes:
    head = f"From: <{_SENDER}>\r\nTo: <{_RECIPIENT}>\r\nSubject: folds\r\n".encode()
    return head + b"X-Poison: a" + b"\r\n x" * lines + b"\r\n\r\nbody\r\n"


def subject_message(size: int) -> bytes:
    line = b" " + b"word " * 15 + b"\r\n"
    head = f"From: <{_SENDER}>\r\nTo: <{_RECIPIENT}>\r\nSubject: s\r\n".encode()
    return head + line * (size // len(line)) + b"\r\nbody\r\n"


async def smtps(rail: Rail, message: bytes) -> str:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", rail.submission, ssl=rail.tls(), server_hostname=_HOSTNAME, limit=1 << 20
    )

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line or line[3:4] != b"-":
                return line

    try:
        await reply()
        for command in (b"EHLO bench.example", f"MAIL FROM:<{_SENDER}>".encode()):
            writer.write(command + b"\r\n")
            await reply()
        writer.write(f"RCPT TO:<{_RECIPIENT}>\r\nDATA\r\n".encode())
        await reply()
        await reply()
        writer.write(message + b".\r\n")
        answer = await reply()
        writer.write(b"QUIT\r\n")
        await writer.drain()
        return answer.decode("utf-8", "replace").strip()
    finally:
        writer.close()


async def api(rail: Rail, document: dict[str, Any]) -> str:
    body = json.dumps(document).encode()
    head = (
        f"POST /api/v1/send HTTP/1.1\r\nHost: {_HOSTNAME}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", rail.https, ssl=rail.tls(), server_hostname=_HOSTNAME
    )
    try:
        writer.write(head + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status = response.split(b"\r\n", 1)[0].decode("ascii", "replace")
    answer = response.partition(b"\r\n\r\n")[2][:200].decode("utf-8", "replace").strip()
    return f"{status} {answer}"


async def phase(rail: Rail, name: str, work: Any, settle: float) -> None:
    """Probe while ``work`` runs (its answer is the outcome) and ``settle`` s after."""
    probe = Probe(rail.dns)
    started = time.perf_counter()
    outcome = ""
    try:
        if work is not None:
            outcome = await asyncio.wait_for(work, timeout=600)
    except Exception as error:
        outcome = f"failed: {type(error).__name__}: {error}"
    took = time.perf_counter() - started
    await asyncio.sleep(settle)
    latencies, lost = probe.finish()
    report(name, latencies, lost, f"({took:.2f} s) {outcome[:120]}")


async def run(args: argparse.Namespace) -> None:
    sink = Sink()
    server = await asyncio.start_server(sink.session, "127.0.0.1", 0, limit=64 << 20)
    sink_port = server.sockets[0].getsockname()[1]
    rail = Rail(args.header_size, sink_port, args.keep, args.hold)
    lines = int(400_000 * args.scale)
    subject = int(10 * 1024 * 1024 * args.scale)
    try:
        rail.start()
        print(
            f"Rail pid {rail.process.pid if rail.process else '?'}; header_size"
            f" {args.header_size or 'default (1MB)'}; {lines} continuation lines,"
            f" {subject / 1e6:.1f} MB subjects",
            flush=True,
        )
        await phase(rail, "idle", None, args.idle)
        await phase(rail, "smtps-folds", smtps(rail, folded_message(lines)), args.settle)
        await phase(rail, "smtps-subject", smtps(rail, subject_message(subject)), args.settle)
        folds = {"from": _SENDER, "to": [_RECIPIENT], "body_text": "b"}
        folds["headers"] = {"X-Poison": "x " * lines}
        await phase(rail, "api-folds", api(rail, folds), args.settle)
        long_subject = {"from": _SENDER, "to": [_RECIPIENT], "body_text": "b"}
        long_subject["subject"] = "word " * (subject // 5)
        await phase(rail, "api-subject", api(rail, long_subject), args.settle)

        async def restart() -> str:
            # Queue the two large ones again and kill Rail before it can deliver them:
            # after the restart it reads, signs and delivers them from the store.
            first = await smtps(rail, subject_message(subject))
            second = await api(rail, long_subject)
            rail.kill()
            await asyncio.get_running_loop().run_in_executor(None, rail.start)
            pid = rail.process.pid if rail.process else "?"
            return f"SIGKILL after [{first[:20]}] [{second[:24]}]; restarted, pid {pid}"

        await phase(rail, "restart", restart(), args.after)
        print(f"sink received {sink.received} messages, {sink.octets / 1e6:.1f} MB", flush=True)
    finally:
        rail.stop()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header-size", help="limits.header_size for Rail (e.g. 64MB)")
    parser.add_argument("--scale", type=float, default=1.0, help="size of the hostile messages")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds probed at rest")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds probed after each")
    parser.add_argument("--after", type=float, default=5.0, help="seconds probed after restart")
    parser.add_argument("--keep", action="store_true", help="keep Rail's directory")
    parser.add_argument(
        "--hold", action="store_true", help="deliver nothing: intake's costs alone, no signing"
    )
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
