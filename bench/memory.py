"""Memory benchmark: many port-25 sessions streaming large messages at once.

Run by hand (never by the test suite); bench/README.md has the usage and the target.
Everything is on loopback. ``twistd rail`` runs as a child with a dev config whose route
sends every local address to one client; this process runs the DNS server (the sender's
SPF record), a webhook receiver that answers 200, and S SMTP clients that connect at
once, each sending one message of SIZE bytes as fast as Rail reads it (EHLO, then MAIL,
RCPT and DATA pipelined, then the message, then QUIT).

Rail buffers each message in memory until the end of DATA; ``limits.data_memory`` bounds
what all sessions hold together, and the sessions that cannot get memory are answered
``452 4.3.1``. The script samples Rail's resident memory every 50 ms and prints the peak,
and how many sessions got each reply.

    python bench/memory.py --sessions 200 --size 25MB
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.web import resource, server
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.config import load_config
from rail.config.units import parse_size
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from tests.support.dnsserver import start_dns, txt_record

_BIN = Path(sys.executable).parent
_LINE = b"x" * 76 + b"\r\n"
_CHUNK = _LINE * 800  # 62.4 KB of message text per write


class _Receiver(resource.Resource):
    """Answers every webhook POST with 200 and counts them."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    def render_POST(self, request: Any) -> bytes:
        self.posts += 1
        request.setResponseCode(200)
        return b""


@implementer(IPushProducer)
class _Sender(protocol.Protocol):
    """One SMTP session sending one message of ``size`` bytes; ``done`` fires with the
    reply code to the end of DATA (or to DATA itself when that was refused), or with
    ``"closed"`` if the connection ended first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._left = 0
        self._paused = False
        self._buffer = b""
        self._replies: list[bytes] = []
        self._state = "greeting"
        self.done: defer.Deferred[str] = defer.Deferred()

    def _finish(self, result: str) -> None:
        if not self.done.called:
            self.done.callback(result)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\r\n")
        for line in lines:
            if line[3:4] == b" ":
                self._reply(line)

    def _reply(self, line: bytes) -> None:
        assert self.transport is not None
        code = line[:3].decode("ascii", "replace")
        if self._state == "greeting":
            self._state = "ehlo"
            self.transport.write(b"EHLO bench.sender.bench\r\n")
        elif self._state == "ehlo":
            self._state = "envelope"
            self._replies = []
            self.transport.write(
                b"MAIL FROM:<someone@sender.bench>\r\nRCPT TO:<bench@rail.test>\r\nDATA\r\n"
            )
        elif self._state == "envelope":
            self._replies.append(line)
            if code == "354":
                self._state = "data"
                self._start_message()
            elif len(self._replies) == 3:
                self._quit(code)
        elif self._state == "sent":
            self._quit(code)

    def _start_message(self) -> None:
        assert self.transport is not None
        header = b"From: <someone@sender.bench>\r\nTo: <bench@rail.test>\r\nSubject: big\r\n\r\n"
        self.transport.write(header)
        self._left = self._size - len(header)
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        assert self.transport is not None
        while self._left > 0 and not self._paused and self._state == "data":
            piece = _CHUNK if self._left >= len(_CHUNK) else _LINE * (self._left // len(_LINE))
            if not piece:
                piece = b"x" * max(0, self._left - 2) + b"\r\n"
            self.transport.write(piece)
            self._left -= len(piece)
        if self._left <= 0 and self._state == "data":
            self._state = "sent"
            self.transport.unregisterProducer()
            self.transport.write(b".\r\n")

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        self._paused = True

    def _quit(self, code: str) -> None:
        assert self.transport is not None
        self._state = "quit"
        self._finish(code)
        self.transport.write(b"QUIT\r\n")
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._finish("closed")


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _wait_for_port(reactor: Any, port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit("twistd exited during start-up")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise SystemExit(f"port {port} never opened")


def _configure(args: argparse.Namespace, dns_port: int, hook_url: str) -> tuple[Path, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="rail-bench-memory-")) / "rail"
    subprocess.run(
        [
            str(_BIN / "rail"),
            *("init", "--dev", str(workdir)),
            *("--https-port", "18443", "--submission-port", "18465"),
            *("--inbound-port", str(args.port), "--http-port", "18080", "--dns-port", "18053"),
        ],
        check=True,
        capture_output=True,
    )
    config_path = workdir / "rail.yaml"
    document = yaml.safe_load(config_path.read_text())
    document["listen"].update(https="tcp:18443", submission=None, http=None, dns=None)
    document["inbound"].update(
        nameservers=[f"127.0.0.1:{dns_port}"],
        routes=[{"match": "*@rail.test", "client": "bench"}],
        max_connections_per_ip=args.sessions + 10,
    )
    document["webhooks"].update(concurrency=args.webhook_concurrency)
    # The message must fit message_size: the bound measured here is data_memory (which
    # must be at least 4 x message_size).
    document["limits"]["message_size"] = args.size + 65536
    if args.data_memory:
        document["limits"]["data_memory"] = args.data_memory
    document["shutdown"]["drain_delay"] = "0s"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path)
    issue_client(
        config,
        ClientRequest(
            name="bench",
            emails=("bench@rail.test",),
            webhook=hook_url,
            key_type="ed25519",
            validity=timedelta(days=1),
        ),
        workdir,
        datetime.now(UTC),
        force=True,
    )
    return workdir, config_path


async def main(reactor: Any, args: argparse.Namespace) -> None:
    receiver = _Receiver()
    site = server.Site(receiver)
    site.noisy = False
    webhook_port = reactor.listenTCP(0, site, interface="127.0.0.1")
    hook_url = f"http://127.0.0.1:{webhook_port.getHost().port}/hook"
    records = {"sender.bench": [txt_record("v=spf1 ip4:127.0.0.1 -all", ttl=3600)]}
    dns_server = await start_dns(reactor, records)
    workdir, config_path = _configure(args, dns_server.port, hook_url)
    log = workdir / "twistd.log"
    process = subprocess.Popen(
        [
            str(_BIN / "twistd"),
            *("-n", "--pidfile=", "-l", str(log)),
            *("rail", "--config", str(config_path)),
        ]
    )
    samples: list[float] = []
    try:
        await _wait_for_port(reactor, args.port, process)
        before = _rss_mb(process.pid, "VmRSS")
        sampler = task.LoopingCall(lambda: samples.append(_rss_mb(process.pid, "VmRSS")))
        sampler.start(0.05)
        begin = time.monotonic()
        senders = [_Sender(args.size) for _ in range(args.sessions)]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", args.port, timeout=30)
        await defer.gatherResults([connectProtocol(endpoint, s) for s in senders])
        everything = defer.gatherResults([s.done for s in senders])
        timeout = reactor.callLater(args.timeout, everything.cancel)
        try:
            results = await everything
        except defer.CancelledError:
            raise SystemExit(f"timed out after {args.timeout} s: see {log}") from None
        timeout.cancel()
        elapsed = time.monotonic() - begin
        await task.deferLater(reactor, 1.0, lambda: None)  # webhooks of the last messages
        sampler.stop()
        peak_hwm = _rss_mb(process.pid, "VmHWM")
        after = _rss_mb(process.pid, "VmRSS")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await dns_server.stop()
        await webhook_port.stopListening()
    replies = Counter(results)
    mb = args.size / 1024 / 1024
    print(
        f"{args.sessions} sessions x {mb:.1f} MB at once: done in {elapsed:.1f} s"
        f" ({args.sessions * args.size / elapsed / 1024 / 1024:.0f} MB/s offered)"
    )
    others = "".join(
        f", {code} {n}" for code, n in sorted(replies.items()) if code not in ("250", "452")
    )
    print(
        f"replies at end of DATA: 250 {replies.get('250', 0)}, 452 {replies.get('452', 0)}{others}"
    )
    print(
        f"Rail RSS: peak {max(samples, default=0.0):.1f} MB (sampled every 50 ms),"
        f" VmHWM {peak_hwm:.1f} MB; {before:.1f} MB before, {after:.1f} MB after"
    )
    print(f"webhook POSTs received: {receiver.posts}")
    print(f"work directory (delete when done): {workdir}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="concurrent SMTP sessions")
    parser.add_argument("--size", type=parse_size, default="25MB", help="bytes per message")
    parser.add_argument(
        "--data-memory", help="limits.data_memory for Rail (default: Rail's own default)"
    )
    parser.add_argument("--port", type=int, default=18025, help="Rail's inbound port")
    parser.add_argument("--webhook-concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
