"""DNS benchmark: Rail's authoritative server against NSD, both measured with dnsperf.

Run by hand (never by the test suite). Needs the Debian packages ``dnsperf`` and ``nsd``
(NSD is skipped when absent). Both servers serve the same zone (example.com as Rail
builds it, with an ed25519 and an RSA-2048 DKIM key) on 127.0.0.1, high ports, from a
temporary directory; the query mix is MX and TXT (SPF, DKIM, DMARC), over UDP.

    .venv/bin/python bench/dnsserve.py
    .venv/bin/python bench/dnsserve.py --seconds 20 --nsd-servers 2

Rail runs in a child process (one reactor, one core) with rate limiting off, as
``twistd rail`` would with ``dns.rate_limit.responses_per_second: 0``. NSD runs with
``server-count`` 1 by default so both use one core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Running this file puts bench/ first on sys.path, where this file would shadow the
# dnspython package ("dns") that dkimpy imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from rail.config.schema import DNS
from rail.dkim.records import PublishedKey
from rail.dns.zone import Zone, build_zones
from rail.dns.zonefile import zone_text

HOSTNAME = "mail.example.com"
DOMAIN = "example.com"
QUERIES = [
    f"{DOMAIN} MX",
    f"{DOMAIN} TXT",
    f"r1._domainkey.{DOMAIN} TXT",
    f"e1._domainkey.{DOMAIN} TXT",
    f"_dmarc.{DOMAIN} TXT",
]


def zone() -> Zone:
    keys = [
        PublishedKey("e1", "ed25519", "v=DKIM1; k=ed25519; p=" + "A" * 43 + "="),
        PublishedKey("r1", "rsa", "v=DKIM1; k=rsa; p=" + "B" * 392),
    ]
    config = DNS(ipv4=("192.0.2.10",), ipv6=("2001:db8::10",), ttl=3600.0)
    (built,) = build_zones([DOMAIN], HOSTNAME, config, {DOMAIN: keys}, {DOMAIN: 2026010101})
    return built


def serve(port: int) -> None:
    """The child: Rail's DNS service on 127.0.0.1:``port`` until killed."""
    from twisted.internet import reactor

    from rail.config.listen import ListenSpec
    from rail.dns.server import DNSServer
    from rail.dns.service import DNSService

    service = DNSService(
        reactor,
        ListenSpec("tcp", port, "127.0.0.1"),
        DNSServer([zone()], reactor, None),
        refresh_interval=None,
    )
    service.privilegedStartService()
    service.startService()
    reactor.run()  # type: ignore[attr-defined]


def free_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def wait_udp(port: int, timeout: float = 10.0) -> None:
    """Until a DNS query to ``port`` is answered."""
    query = bytes.fromhex("1234 0000 0001 0000 0000 0000".replace(" ", ""))
    query += b"\x07example\x03com\x00\x00\x06\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(query, ("127.0.0.1", port))
            try:
                s.recvfrom(4096)
                return
            except OSError:
                continue
    raise RuntimeError(f"nothing answers on port {port}")


def dnsperf(port: int, queries: Path, seconds: int, clients: int) -> tuple[float, str]:
    """Queries per second dnsperf measured, and its summary."""
    out = subprocess.run(
        [
            *("dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)),
            *("-l", str(seconds), "-c", str(clients), "-q", "200"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    qps = re.search(r"Queries per second:\s+([0-9.]+)", out)
    lost = re.search(r"Queries lost:\s+(.*)", out)
    latency = re.search(r"Average Latency \(s\):\s+([0-9.]+)", out)
    summary = f"lost {lost[1] if lost else '?'}, average latency {latency[1] if latency else '?'}s"
    return (float(qps[1]) if qps else 0.0), summary


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live descendants (NSD's server processes are its
    grandchildren)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree = {pid}
    grew = True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = 0
    for each in tree:
        try:
            fields = _stat(each)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(name: str, pid: int, port: int, queries: Path, args: argparse.Namespace) -> None:
    before = cpu_seconds(pid)
    qps, summary = dnsperf(port, queries, args.seconds, args.clients)
    used = cpu_seconds(pid) - before
    print(
        f"{name:<28} {qps:>10,.0f} queries/s   server CPU {used:5.1f}s"
        f" ({qps * args.seconds / max(used, 0.001):,.0f} queries per CPU-second); {summary}"
    )


def nsd_config(directory: Path, port: int, servers: int) -> Path:
    (directory / f"{DOMAIN}.zone").write_text(zone_text(zone()))
    config = directory / "nsd.conf"
    config.write_text(
        "server:\n"
        f"  ip-address: 127.0.0.1@{port}\n"
        f"  server-count: {servers}\n"
        f'  username: ""\n'
        f'  chroot: ""\n'
        f'  zonesdir: "{directory}"\n'
        f'  database: ""\n'
        f'  zonelistfile: "{directory}/zone.list"\n'
        f'  xfrdfile: "{directory}/xfrd.state"\n'
        f'  xfrdir: "{directory}"\n'
        f'  pidfile: "{directory}/nsd.pid"\n'
        f'  logfile: "{directory}/nsd.log"\n'
        "  verbosity: 0\n"
        "  hide-version: yes\n"
        "  rrl-ratelimit: 0\n"  # Debian's NSD limits 200 answers/s per /24 by default
        "  rrl-whitelist-ratelimit: 0\n"
        "remote-control:\n"
        "  control-enable: no\n"
        "zone:\n"
        f"  name: {DOMAIN}\n"
        f"  zonefile: {DOMAIN}.zone\n"
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each dnsperf run")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--nsd-servers", type=int, default=1, help="NSD server-count")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf not installed (Debian package dnsperf)")
    with tempfile.TemporaryDirectory(prefix="rail-dns-bench-") as temporary:
        directory = Path(temporary)
        queries = directory / "queries.txt"
        queries.write_text("\n".join(QUERIES) + "\n")
        print(f"{len(QUERIES)} query kinds (MX, TXT: SPF, DKIM, DMARC), UDP, {args.seconds}s each")

        port = free_port()
        rail = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
        try:
            wait_udp(port)
            measure("Rail (twisted.names codec)", rail.pid, port, queries, args)
        finally:
            rail.terminate()
            rail.wait()

        nsd = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)
        if nsd is None:
            print("NSD not installed (Debian package nsd): no comparison")
            return
        port = free_port()
        config = nsd_config(directory, port, args.nsd_servers)
        server = subprocess.Popen([nsd, "-d", "-c", str(config)])
        try:
            wait_udp(port)
            name = f"NSD {args.nsd_servers} server process" + ("es" if args.nsd_servers > 1 else "")
            measure(name, server.pid, port, queries, args)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
