"""Forwarding benchmark: ``smtp-source`` → Rail's port 25 → forwarded to a final host
(Postfix's ``smtp-sink``), against plain inbound (port 25 → webhook), interleaved.

Run by hand (never by the test suite); bench/README.md has the usage. Everything is on
loopback, as in ``bench/inbound.py`` (whose helpers this reuses): a DNS server with the
sender domain's SPF record and the final domain's MX, a webhook receiver, and a fresh
``twistd rail`` per round. Rounds alternate between the two modes so that both see the
same machine:

- ``forward``: route ``*@rail.test`` forwards to ``bob@dest.bench``; every message is
  verified, SRS-rewritten, ARC-sealed (two RSA signatures in a thread), queued with the
  inbound record, DKIM-signed and delivered over SMTP to ``smtp-sink``. The clock runs
  until the sink has N transactions.
- ``webhook``: route ``*@rail.test`` goes to one client; the clock runs until the
  receiver has N POSTs (as ``bench/inbound.py``).

    python bench/forward.py --messages 5000 --sessions 20 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
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
from twisted.names import dns
from twisted.web import server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.config import load_config
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from tests.support.dnsserver import start_dns, txt_record
from tests.support.smtpsink import start_smtp_sink

_spec = importlib.util.spec_from_file_location(
    "bench_inbound", Path(__file__).with_name("inbound.py")
)
assert _spec is not None and _spec.loader is not None
_inbound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_inbound)

_BIN = Path(sys.executable).parent
_SMTP_SOURCE = "/usr/sbin/smtp-source"


async def _until(reactor: Any, count: Any, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count() < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out with {count()} of {expected} delivered")
        await task.deferLater(reactor, 0.02, lambda: None)


async def _round(
    reactor: Any, args: argparse.Namespace, mode: str, dns_port: int
) -> dict[str, float]:
    receiver = _inbound._Receiver()
    receiver.expected = args.messages
    site = server.Site(receiver)
    site.noisy = False
    webhook_port = reactor.listenTCP(0, site, interface="127.0.0.1")
    hook_url = f"http://127.0.0.1:{webhook_port.getHost().port}/hook"
    base = Path(tempfile.mkdtemp(prefix=f"rail-bench-forward-{mode}-"))
    dumps = base / "sink"
    dumps.mkdir()
    sink = await start_smtp_sink(reactor, dump_dir=dumps)
    workdir = base / "rail"
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
    route: dict[str, Any] = {"match": "*@rail.test"}
    route.update(forward=["bob@dest.bench"]) if mode == "forward" else route.update(client="bench")
    document["inbound"].update(
        nameservers=[f"127.0.0.1:{dns_port}"],
        routes=[route],
        max_connections_per_ip=max(20, args.sessions * 2),
    )
    document["delivery"].update(hold=False, nameservers=[f"127.0.0.1:{dns_port}"], port=sink.port)
    document["webhooks"].update(concurrency=50)
    document["limits"]["smtp_bad_commands"] = 1000
    document["shutdown"]["drain_delay"] = "0s"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path)
    issue_client(
        config,
        ClientRequest(
            name="bench", emails=("bench@rail.test",), webhook=hook_url,
            key_type="ed25519", validity=timedelta(days=1),
        ),
        workdir,
        datetime.now(UTC),
        force=True,
    )  # fmt: skip
    log = workdir / "twistd.log"
    process = subprocess.Popen(
        [
            str(_BIN / "twistd"),
            "-n",
            "--pidfile=",
            "-l",
            str(log),
            "rail",
            "--config",
            str(config_path),
        ]
    )
    try:
        await _inbound._wait_for_port(reactor, args.port, process)
        cpu0 = _inbound._cpu(process.pid)
        begin = time.monotonic()
        _out, err, code = await getProcessOutputAndValue(
            _SMTP_SOURCE,
            [
                "-N", *("-s", str(args.sessions), "-m", str(args.messages)),
                *("-l", str(args.size), "-M", "mta.sender.bench"),
                *("-f", "someone@sender.bench", "-t", "alias@rail.test"),
                f"127.0.0.1:{args.port}",
            ],
            env=os.environ,
        )  # fmt: skip
        smtp_done = time.monotonic() - begin
        if code != 0:
            raise SystemExit(f"smtp-source failed ({code}): {err.decode()[-500:]}")
        if mode == "forward":
            await _until(reactor, lambda: len(os.listdir(dumps)), args.messages, args.timeout)
        else:
            await _until(reactor, lambda: len(receiver.ids), args.messages, args.timeout)
        elapsed = time.monotonic() - begin
        cpu = _inbound._cpu(process.pid) - cpu0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        await sink.stop()
        await webhook_port.stopListening()
    rate = args.messages / elapsed
    print(
        f"{mode:8} {rate:7,.0f} msg/s end to end (SMTP intake {args.messages / smtp_done:,.0f}),"
        f" server CPU {cpu / args.messages * 1000:.3f} ms/msg; work directory {base}",
        flush=True,
    )
    return {"rate": rate, "cpu_ms": cpu / args.messages * 1000}


async def main(reactor: Any, args: argparse.Namespace) -> None:
    if not Path(_SMTP_SOURCE).exists():
        raise SystemExit("smtp-source not found: apt-get install postfix")
    records = {
        "sender.bench": [txt_record("v=spf1 ip4:127.0.0.1 -all", ttl=3600)],
        "dest.bench": [dns.Record_MX(10, b"mx.dest.bench", ttl=3600)],
        "mx.dest.bench": [dns.Record_A("127.0.0.1", ttl=3600)],
    }
    dns_server = await start_dns(reactor, records)
    results: dict[str, list[dict[str, float]]] = {"forward": [], "webhook": []}
    try:
        for number in range(args.rounds):
            order = ("forward", "webhook") if number % 2 == 0 else ("webhook", "forward")
            for mode in order:
                results[mode].append(await _round(reactor, args, mode, dns_server.port))
    finally:
        await dns_server.stop()
    for mode, rounds in results.items():
        rates = [r["rate"] for r in rounds]
        cpus = [r["cpu_ms"] for r in rounds]
        print(
            f"{mode}: median {statistics.median(rates):,.0f} msg/s"
            f" (range {min(rates):,.0f}-{max(rates):,.0f}),"
            f" median server CPU {statistics.median(cpus):.3f} ms/msg over {len(rounds)} rounds"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode, alternating")
    parser.add_argument("--port", type=int, default=18025, help="Rail's inbound port")
    parser.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
