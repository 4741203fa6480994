"""Inbound benchmark: Postfix's ``smtp-source`` → Rail's port 25 → a local webhook.

Run by hand (never by the test suite); bench/README.md has the usage and the target.
Everything is on loopback. This process runs a DNS server (twisted.names: the sender
domain's SPF record, so every message is really SPF-checked) and the webhook receiver
(twisted.web, answers 200 at once); ``twistd rail`` runs as a child with a dev config
whose route sends every local address to one client. ``smtp-source`` sends N messages
over S parallel sessions. The clock runs from the first SMTP connection until the
receiver has N POSTs. Receive→webhook latency is the receiver's time minus the time in
the message's ULID (millisecond resolution), so it covers SPF/DKIM/DMARC, the fsync, the
dispatcher and the POST.

    python bench/inbound.py --messages 10000 --sessions 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web import resource, server
from ulid import ULID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.config import load_config
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from tests.support.dnsserver import start_dns, txt_record

_BIN = Path(sys.executable).parent
_SMTP_SOURCE = "/usr/sbin/smtp-source"


class _Receiver(resource.Resource):
    """Counts POSTs and the receive→webhook latency of each (from the ULID's time)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []
        self.done: defer.Deferred[None] = defer.Deferred()
        self.expected = 0
        self.ids: set[str] = set()

    def render_POST(self, request: Any) -> bytes:
        now = time.time()
        body = json.loads(request.content.read())
        message_id = body["message_id"]
        if message_id not in self.ids:
            self.ids.add(message_id)
            self.latencies.append(now - ULID.from_str(message_id).timestamp)
            if len(self.ids) == self.expected and not self.done.called:
                self.done.callback(None)
        request.setResponseCode(200)
        return b""


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread id (the reactor thread's id is the process id)."""
    found: dict[str, float] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = "reactor" if stat.parent.name == str(pid) else f"thread {stat.parent.name}"
        fields = text.rpartition(")")[2].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found[name] = found.get(name, 0.0) + seconds
    return found


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


async def main(reactor: Any, args: argparse.Namespace) -> None:
    if not Path(_SMTP_SOURCE).exists():
        raise SystemExit("smtp-source not found: apt-get install postfix")
    receiver = _Receiver()
    receiver.expected = args.messages
    site = server.Site(receiver)
    site.noisy = False
    webhook_port = reactor.listenTCP(0, site, interface="127.0.0.1")
    hook_url = f"http://127.0.0.1:{webhook_port.getHost().port}/hook"
    records = {"sender.bench": [txt_record("v=spf1 ip4:127.0.0.1 -all", ttl=3600)]}
    dns_server = await start_dns(reactor, records)

    workdir = Path(tempfile.mkdtemp(prefix="rail-bench-inbound-")) / "rail"
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
        nameservers=[f"127.0.0.1:{dns_server.port}"],
        routes=[{"match": "*@rail.test", "client": "bench"}],
        max_connections_per_ip=max(20, args.sessions * 2),
    )
    document["webhooks"].update(concurrency=args.webhook_concurrency)
    document["limits"]["smtp_bad_commands"] = 1000
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
    log = workdir / "twistd.log"
    profile = [f"--profile={args.profile}", "--profiler=cprofile", "--savestats"]
    process = subprocess.Popen(
        [
            str(_BIN / "twistd"),
            *("-n", "--pidfile=", "-l", str(log)),
            *(profile if args.profile else []),
            *("rail", "--config", str(config_path)),
        ]
    )
    try:
        await _wait_for_port(reactor, args.port, process)
        cpu0 = _cpu(process.pid)
        begin = time.monotonic()
        sent = getProcessOutputAndValue(
            _SMTP_SOURCE,
            [
                *(["-c"] if args.verbose else []),
                "-N",
                *("-s", str(args.sessions), "-m", str(args.messages)),
                *("-l", str(args.size), "-M", "mta.sender.bench"),
                *("-f", "someone@sender.bench", "-t", "bench@rail.test"),
                f"127.0.0.1:{args.port}",
            ],
            env=os.environ,
        )
        _out, err, code = await sent
        smtp_done = time.monotonic() - begin
        if code != 0:
            raise SystemExit(f"smtp-source failed ({code}): {err.decode()[-500:]}")
        timeout = reactor.callLater(args.timeout, receiver.done.cancel)
        try:
            await receiver.done
        except defer.CancelledError:
            raise SystemExit(
                f"timed out with {len(receiver.ids)} of {args.messages} webhooks: see {log}"
            ) from None
        timeout.cancel()
        elapsed = time.monotonic() - begin
        cpu = _cpu(process.pid) - cpu0
        peak = _peak_rss_mb(process.pid)
        threads = _threads_cpu(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        await dns_server.stop()
        await webhook_port.stopListening()
    rate = args.messages / elapsed
    print(
        f"{args.messages} messages of {args.size} bytes over {args.sessions} sessions:"
        f" SMTP done in {smtp_done:.2f} s, all webhooks in {elapsed:.2f} s"
    )
    print(f"end to end: {rate:,.0f} msg/s (SMTP intake alone {args.messages / smtp_done:,.0f})")
    print(
        f"receive→webhook p50 {_percentile(receiver.latencies, 0.5) * 1000:.0f} ms,"
        f" p99 {_percentile(receiver.latencies, 0.99) * 1000:.0f} ms"
    )
    print(f"server CPU {cpu:.2f} s = {cpu / args.messages * 1000:.3f} ms per message")
    busiest = sorted(threads.items(), key=lambda i: -i[1])[:6]
    print("CPU by thread: " + ", ".join(f"{n} {c:.2f} s" for n, c in busiest))
    print(f"peak RSS {peak:.1f} MB; work directory (delete when done): {workdir}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--port", type=int, default=18025, help="Rail's inbound port")
    parser.add_argument("--webhook-concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--profile", help="write twistd's cProfile stats to this file")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
