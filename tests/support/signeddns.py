"""A DNSSEC-signed test zone behind a validating resolver, all on loopback.

NSD (Debian ``nsd``) serves the zones authoritatively; ``ldns-keygen`` and
``ldns-signzone`` (``ldnsutils``) sign the secure ones with a fresh KSK and ZSK
(ECDSA P-256); unbound (``unbound``) validates, with the KSK's DS as its only trust
anchor and a stub zone per test zone pointing at NSD. Zones listed as insecure are
served unsigned, so unbound answers them without AD; bogus ones are signed, but unbound's
anchor for them is another key, so it answers SERVFAIL. Everything lives in a fresh
directory and both daemons run in the foreground as children of the test, on free
ports, until :meth:`SignedDNS.stop`.

Usage::

    dns = start_signed_dns({"dest.test": ["@ MX 10 mx", "mx A 127.0.0.1"]},
                           insecure={"plain.test": [...]})
    try: ... resolver 127.0.0.1:dns.port ...
    finally: dns.stop()
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from tests.support.ports import free_port
from tests.support.tools import need_tool

__all__ = ["SignedDNS", "need_signed_dns", "start_signed_dns"]


@attrs.define
class SignedDNS:
    """The running pair; ``port`` is unbound's (the validating resolver's)."""

    root: Path
    port: int
    authoritative_port: int
    processes: list[subprocess.Popen[bytes]]

    def logs(self) -> str:
        """NSD's and unbound's logs, for a failing test's message."""
        parts = []
        for name in ("nsd.log", "unbound.log"):
            path = self.root / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {name}\n{text[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def need_signed_dns() -> dict[str, str]:
    """The paths of the programs, skipping (failing under ``CI=true``) if one is missing."""
    return {
        "nsd": need_tool("nsd", "nsd"),
        "ldns-keygen": need_tool("ldns-keygen", "ldnsutils"),
        "ldns-signzone": need_tool("ldns-signzone", "ldnsutils"),
        "unbound": need_tool("unbound", "unbound"),
    }


def _zone_text(origin: str, lines: Sequence[str]) -> str:
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60",
        f"@ NS ns.{origin}.",
        "ns A 127.0.0.1",
    ]
    return "\n".join([*head, *lines]) + "\n"


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode().strip()


def _sign(
    tools: Mapping[str, str], root: Path, origin: str, zone: Path, bogus: bool = False
) -> str:
    """Sign ``zone`` (writes ``zone.signed``); returns the KSK's DS record text, or for
    ``bogus`` the DS of another KSK, which the zone's signatures do not chain to."""
    ksk = _run([tools["ldns-keygen"], "-a", "ECDSAP256SHA256", "-k", origin], root)
    zsk = _run([tools["ldns-keygen"], "-a", "ECDSAP256SHA256", origin], root)
    _run([tools["ldns-signzone"], "-n", str(zone), zsk, ksk], root)
    if bogus:
        ksk = _run([tools["ldns-keygen"], "-a", "ECDSAP256SHA256", "-k", origin], root)
    return (root / f"{ksk}.ds").read_text().strip()


def _wait_for_answers(port: int, name: str, process: subprocess.Popen[bytes]) -> None:
    """Ask ``name`` SOA over UDP until the server answers (at most 15 s)."""
    import dns.message
    import dns.query

    deadline = time.monotonic() + 15
    query = dns.message.make_query(name, "SOA")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no answer on port {port} after 15s")


def start_signed_dns(
    secure: Mapping[str, Sequence[str]],
    insecure: Mapping[str, Sequence[str]] | None = None,
    bogus: Sequence[str] = (),
) -> SignedDNS:
    """Serve ``secure`` zones signed and ``insecure`` ones unsigned (zone-file lines
    relative to each origin; SOA, NS and ``ns`` are added) and start unbound validating
    them. The secure zones named in ``bogus`` get a trust anchor their signatures do not
    chain to, so unbound answers SERVFAIL for them. Skips if a program is missing (see
    :func:`need_signed_dns`)."""
    tools = need_signed_dns()
    root = Path(tempfile.mkdtemp(prefix="rail-dnssec-"))
    root.chmod(0o755)
    insecure = insecure or {}
    processes: list[subprocess.Popen[bytes]] = []
    result = SignedDNS(root, 0, 0, processes)
    try:
        anchors: list[str] = []
        zones: list[tuple[str, Path]] = []
        for origin, lines in {**secure, **insecure}.items():
            path = root / f"{origin}.zone"
            path.write_text(_zone_text(origin, lines))
            if origin in secure:
                anchors.append(_sign(tools, root, origin, path, bogus=origin in bogus))
                path = path.with_name(path.name + ".signed")
            zones.append((origin, path))
        nsd_port, unbound_port = free_port(), free_port()
        zone_blocks = "".join(
            f"zone:\n  name: {origin}\n  zonefile: {path}\n" for origin, path in zones
        )
        (root / "nsd.conf").write_text(
            f"""server:
  ip-address: 127.0.0.1@{nsd_port}
  port: {nsd_port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{root}"
  database: ""
  zonelistfile: "{root}/zone.list"
  xfrdfile: "{root}/xfrd.state"
  xfrdir: "{root}"
  pidfile: "{root}/nsd.pid"
  logfile: "{root}/nsd.log"
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
{zone_blocks}"""
        )
        processes.append(
            subprocess.Popen(
                [tools["nsd"], "-d", "-c", str(root / "nsd.conf")],
                stdout=subprocess.DEVNULL,
                stderr=(root / "nsd.stderr").open("wb"),
            )
        )
        result.authoritative_port = nsd_port
        _wait_for_answers(nsd_port, zones[0][0], processes[0])
        trust = "".join(f'  trust-anchor: "{anchor}"\n' for anchor in anchors)
        stubs = "".join(
            f'stub-zone:\n  name: "{origin}"\n  stub-addr: 127.0.0.1@{nsd_port}\n'
            for origin, _ in zones
        )
        (root / "unbound.conf").write_text(
            f"""server:
  interface: 127.0.0.1
  port: {unbound_port}
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{root}"
  pidfile: "{root}/unbound.pid"
  logfile: "{root}/unbound.log"
  use-syslog: no
  verbosity: 1
  val-log-level: 2
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  local-zone: "test." nodefault
{trust}remote-control:
  control-enable: no
{stubs}"""
        )
        processes.append(
            subprocess.Popen(
                [tools["unbound"], "-d", "-c", str(root / "unbound.conf")],
                stdout=subprocess.DEVNULL,
                stderr=(root / "unbound.stderr").open("wb"),
            )
        )
        result.port = unbound_port
        _wait_for_answers(unbound_port, zones[0][0], processes[1])
    except BaseException:
        result.stop()
        raise
    return result
