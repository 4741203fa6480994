"""Connection-flood benchmark: many idle or slow connections, then is anyone still served?

Run by hand (never by the test suite); bench/README.md has the usage. Starts ``twistd rail``
on a ``rail init --dev`` set-up (all five listeners on loopback, delivery held), then, for
each listener in turn (465, 25, 443, DNS over TCP), opens up to ``--connections`` TCP
connections to it from many loopback source addresses (127.1.0.1, 127.1.0.2, ...,
``--per-source`` connections each) and holds them ``--hold`` seconds: ``idle`` ones send
nothing, ``slow`` ones send one byte every ``--interval`` seconds (a header line's byte on
443, a command byte without CRLF on 25, ClientHello bytes on 465, a length byte on DNS).
Meanwhile, and at the end of the hold, a legitimate client at 127.0.0.1 is timed on every
service: SMTPS with the dev client certificate to EHLO, SMTP greeting and EHLO on 25,
``GET /healthz`` over TLS, and a DNS query over UDP and over TCP; each must be answered
within ``--deadline`` (1 s). Rail's open descriptors (``/proc/PID/fd``) are sampled
throughout and reported against its limit.

    python bench/connections.py --connections 20000 --mode idle
    python bench/connections.py --connections 2000 --mode slow --listeners 25,443

Bounded in time: each listener's round takes at most ``--open-timeout`` + ``--hold``
seconds plus the probes, and connections are opened at most ``--rate`` per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

_BIN = Path(sys.executable).parent
_LISTENERS = ("465", "25", "443", "dns")
_LEGIT = "127.0.0.1"


# -- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_LEGIT, 0))
        port: int = s.getsockname()[1]
        return port


class Rail:
    """``rail init --dev`` into a temporary directory and ``twistd rail`` on free ports."""

    def __init__(self, keep: bool, max_per_listener: int | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rail-bench-conns-"))
        self.dev = self.directory / "dev"
        self.keep = keep
        self.ports = {name: _free_port() for name in ("443", "465", "25", "80", "dns")}
        rail = str(_BIN / "rail") if (_BIN / "rail").exists() else shutil.which("rail") or "rail"
        subprocess.run(
            [
                *(rail, "init", "--dev", str(self.dev)),
                *("--https-port", str(self.ports["443"])),
                *("--submission-port", str(self.ports["465"])),
                *("--inbound-port", str(self.ports["25"])),
                *("--http-port", str(self.ports["80"])),
                *("--dns-port", str(self.ports["dns"])),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        config = self.dev / "rail.yaml"
        document = yaml.safe_load(config.read_text())
        document["shutdown"]["drain_delay"] = "0s"
        if max_per_listener is not None:
            document["limits"]["connections"] = {"max_per_listener": max_per_listener}
        config.write_text(yaml.safe_dump(document))
        self.hostname: str = document["hostname"]
        self.log = self.directory / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        twistd = str(_BIN / "twistd") if (_BIN / "twistd").exists() else "twistd"
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [twistd, "-n", "--pidfile=", "rail", "--config", str(self.dev / "rail.yaml")],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + 60
        for name, port in self.ports.items():
            while True:
                if self.process.poll() is not None:
                    raise SystemExit(f"twistd exited:\n{self.log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} never listened:\n{self.log.read_text()[-3000:]}")
                with socket.socket() as probe:
                    if probe.connect_ex((_LEGIT, port)) == 0:
                        break
                time.sleep(0.1)

    def descriptors(self) -> int:
        try:
            return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))
        except OSError:
            return -1

    def descriptor_limit(self) -> str:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft} (hard {hard})"
        return "?"

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.keep:
            print(f"kept {self.directory} (log: {self.log})", file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


# -- legitimate clients (blocking, run in threads) -----------------------------------------


def _dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x06\x00\x01"


def _reply(sock: Any) -> bytes:
    """One SMTP reply (all its lines)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) > 3 and line[3:4] == b" " for line in lines[:-1]):
            return data


def _probe_465(rail: Rail, timeout: float) -> str:
    context = ssl.create_default_context(cafile=str(rail.dev / "ca.crt"))
    context.load_cert_chain(str(rail.dev / "app.crt"), str(rail.dev / "app.key"))
    context.check_hostname = False
    with socket.create_connection((_LEGIT, rail.ports["465"]), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            if not _reply(tls).startswith(b"220"):
                raise ConnectionError("no greeting")
            tls.sendall(b"EHLO bench.example\r\n")
            if not _reply(tls).startswith(b"250"):
                raise ConnectionError("EHLO refused")
            tls.sendall(b"QUIT\r\n")
    return "EHLO 250"


def _probe_25(rail: Rail, timeout: float) -> str:
    with socket.create_connection((_LEGIT, rail.ports["25"]), timeout=timeout) as sock:
        greeting = _reply(sock)
        if not greeting.startswith(b"220"):
            raise ConnectionError(greeting[:40].decode(errors="replace"))
        sock.sendall(b"EHLO bench.example\r\n")
        if not _reply(sock).startswith(b"250"):
            raise ConnectionError("EHLO refused")
        sock.sendall(b"QUIT\r\n")
    return "EHLO 250"


def _probe_443(rail: Rail, timeout: float) -> str:
    context = ssl.create_default_context(cafile=str(rail.dev / "ca.crt"))
    context.check_hostname = False
    with socket.create_connection((_LEGIT, rail.ports["443"]), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: rail\r\nConnection: close\r\n\r\n")
            head = tls.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:40].decode(errors="replace"))
    return "200"


def _probe_dns_udp(rail: Rail, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(_dns_query(rail.hostname), (_LEGIT, rail.ports["dns"]))
        answer = sock.recv(4096)
    return f"rcode {answer[3] & 0xF}"


def _probe_dns_tcp(rail: Rail, timeout: float) -> str:
    query = _dns_query(rail.hostname)
    with socket.create_connection((_LEGIT, rail.ports["dns"]), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        head = b""  # length, id, flags
        while len(head) < 6:
            chunk = sock.recv(6 - len(head))
            if not chunk:
                raise ConnectionError("closed")
            head += chunk
    return f"rcode {head[5] & 0xF}"


_PROBES = {
    "465": _probe_465,
    "25": _probe_25,
    "443": _probe_443,
    "dns-udp": _probe_dns_udp,
    "dns-tcp": _probe_dns_tcp,
}


async def probe_all(rail: Rail, deadline: float) -> dict[str, tuple[bool, float, str]]:
    """Each legitimate client once, in parallel: (served within deadline, seconds, detail)."""

    def run(name: str) -> tuple[bool, float, str]:
        begin = time.monotonic()
        try:
            detail = _PROBES[name](rail, deadline * 5)
        except (OSError, ssl.SSLError, ConnectionError) as e:
            return False, time.monotonic() - begin, type(e).__name__ + ": " + str(e)[:60]
        took = time.monotonic() - begin
        return took <= deadline, took, detail

    names = list(_PROBES)
    results = await asyncio.gather(*(asyncio.to_thread(run, n) for n in names))
    return dict(zip(names, results, strict=True))


# -- the flood ---------------------------------------------------------------------------------


def _source(index: int, per_source: int) -> str:
    """127.1.0.1, 127.1.0.2, ... : one source address per ``per_source`` connections."""
    n = index // per_source + 1
    return f"127.{1 + n // 65024}.{(n // 254) % 256}.{n % 254 + 1}"


_SLOW_BYTES = {
    "465": b"\x16",  # the first byte of a TLS record, then more of nothing
    "25": b"N",  # a command that never ends
    "443": b"X",  # a header line that never ends
    "dns": b"\x00",  # half a length prefix
}


class Flood:
    """Non-blocking sockets to one port, opened at a bounded rate and held."""

    def __init__(self, port: int, listener: str, args: argparse.Namespace) -> None:
        self.port = port
        self.listener = listener
        self.args = args
        self.socks: list[socket.socket] = []
        self.errors: Counter[str] = Counter()

    async def open(self, loop: asyncio.AbstractEventLoop) -> float:
        """Open up to ``--connections``; returns the seconds it took."""
        begin = time.monotonic()
        stop_at = begin + self.args.open_timeout
        pending: set[asyncio.Task[None]] = set()
        for index in range(self.args.connections):
            if time.monotonic() > stop_at:
                self.errors["open timeout"] += self.args.connections - index
                break
            while len(pending) >= self.args.parallel:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.add(asyncio.ensure_future(self._one(loop, index)))
            if self.args.rate:
                await asyncio.sleep(1 / self.args.rate)
        if pending:
            await asyncio.wait(pending)
        return time.monotonic() - begin

    async def _one(self, loop: asyncio.AbstractEventLoop, index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((_source(index, self.args.per_source), 0))
            await asyncio.wait_for(loop.sock_connect(sock, (_LEGIT, self.port)), 5)
        except (OSError, TimeoutError) as e:
            sock.close()
            self.errors[errno.errorcode.get(getattr(e, "errno", 0) or 0, type(e).__name__)] += 1
            return
        self.socks.append(sock)

    def trickle(self) -> None:
        """One slow byte on every connection still open."""
        data = _SLOW_BYTES[self.listener]
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.send(data)

    def census(self) -> Counter[str]:
        """How the server left each connection: still open or closed (after a 421 or
        after a greeting or nothing), read without blocking."""
        states: Counter[str] = Counter()
        for sock in self.socks:
            first = b""
            state = "open"
            while True:
                try:
                    data = sock.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError:
                    state = "closed"
                    break
                if not data:
                    state = "closed"
                    break
                first = first or data
            said = "421" if first.startswith(b"421") else "data" if first else "nothing"
            states[f"{state} (server said {said})"] += 1
        return states

    def close(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.socks = []


async def round_for(rail: Rail, listener: str, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    flood = Flood(rail.ports[listener], listener, args)
    peak = rail.descriptors()
    opened_in = await flood.open(loop)
    peak = max(peak, rail.descriptors())
    probes: list[dict[str, tuple[bool, float, str]]] = []
    end = time.monotonic() + args.hold
    next_probe = time.monotonic()
    while time.monotonic() < end:
        if args.mode == "slow":
            flood.trickle()
        peak = max(peak, rail.descriptors())
        if time.monotonic() >= next_probe:
            probes.append(await probe_all(rail, args.deadline))
            next_probe = time.monotonic() + args.probe_every
        await asyncio.sleep(min(args.interval, max(0.0, end - time.monotonic())))
    probes.append(await probe_all(rail, args.deadline))
    peak = max(peak, rail.descriptors())
    census = flood.census()
    opened = len(flood.socks)
    flood.close()
    await asyncio.sleep(1.0)
    return {
        "listener": listener,
        "opened": opened,
        "opened_in": opened_in,
        "errors": dict(flood.errors),
        "census": dict(census),
        "probes": probes,
        "peak_fds": peak,
        "after_fds": rail.descriptors(),
    }


def _print_round(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n== flood on {result['listener']} ({args.mode}) ==")
    print(
        f"opened        {result['opened']} of {args.connections} in {result['opened_in']:.1f} s"
        f" from ~{max(1, args.connections // args.per_source)} source addresses"
    )
    if result["errors"]:
        print(f"not opened    {result['errors']}")
    print(f"at the end    {result['census']}")
    print(f"rail fds      peak {result['peak_fds']}, after close {result['after_fds']}")
    worst: dict[str, tuple[bool, float, str]] = {}
    failures: Counter[str] = Counter()
    for probe in result["probes"]:
        for name, (ok, took, detail) in probe.items():
            if not ok:
                failures[name] += 1
            if name not in worst or took > worst[name][1] or not ok:
                worst[name] = (ok, took, detail)
    rounds = len(result["probes"])
    for name, (_ok, took, detail) in worst.items():
        served = rounds - failures[name]
        print(
            f"legit {name:8} served within {args.deadline:.0f} s {served}/{rounds};"
            f" slowest {took * 1000:.0f} ms ({detail})"
        )


def _raise_own_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def main(args: argparse.Namespace) -> int:
    limit = _raise_own_limit(args.connections + 200)
    if args.connections > limit - 200:
        print(f"own descriptor limit {limit}: --connections lowered to {limit - 200}")
        args.connections = limit - 200
    rail = Rail(args.keep, args.max_per_listener)
    try:
        rail.start()
        print(f"rail pid {rail.pid}, descriptor limit {rail.descriptor_limit()}")
        for line in rail.log_lines("descriptors:"):
            print("rail says     " + line.split("] ", 1)[-1])
        print(f"rail fds      {rail.descriptors()} at rest")
        baseline = await probe_all(rail, args.deadline)
        print(
            "at rest       "
            + ", ".join(f"{n} {t * 1000:.0f} ms" for n, (_, t, _) in baseline.items())
        )
        results = []
        for listener in args.listeners:
            result = await round_for(rail, listener, args)
            _print_round(result, args)
            results.append(result)
        print("\nrefusals logged by rail (rate-limited lines):")
        counts = Counter(
            " ".join(part for part in line.split() if part.startswith(("listener=", "reason=")))
            for line in rail.log_lines("refused listener=")
        )
        for key, count in sorted(counts.items()):
            print(f"  {key}: {count} lines")
        served = all(
            ok for result in results for probe in result["probes"] for ok, _, _ in probe.values()
        )
        print(
            "\nverdict       "
            + ("every legit probe served in time" if served else "SOME LEGIT PROBES FAILED")
        )
        return 0 if served else 1
    finally:
        rail.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20000, help="per listener")
    parser.add_argument("--per-source", type=int, default=10, help="connections per source address")
    parser.add_argument("--mode", choices=("idle", "slow"), default="idle")
    parser.add_argument("--listeners", default=",".join(_LISTENERS), help="of 465,25,443,dns")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds to hold the flood")
    parser.add_argument("--interval", type=float, default=3.0, help="slow mode: seconds per byte")
    parser.add_argument("--probe-every", type=float, default=5.0, help="seconds between probes")
    parser.add_argument("--deadline", type=float, default=1.0, help="a legit client's bound")
    parser.add_argument("--rate", type=float, default=4000.0, help="connections opened per second")
    parser.add_argument("--parallel", type=int, default=256, help="connects in flight at once")
    parser.add_argument("--open-timeout", type=float, default=60.0, help="seconds to open them")
    parser.add_argument(
        "--max-per-listener",
        type=int,
        help="set limits.connections.max_per_listener (default: Rail derives it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.listeners = [name.strip() for name in args.listeners.split(",") if name.strip()]
    unknown = set(args.listeners) - set(_LISTENERS)
    if unknown:
        parser.error(f"unknown listeners {sorted(unknown)}; choose from {', '.join(_LISTENERS)}")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
