"""Failover: two Rail nodes share one PostgreSQL; one is killed mid-delivery, the other
finishes its work.

Two ``twistd -n rail`` processes, each with its own listeners and data directory (a copy
of the first's, made by ``rail init --dev`` before either started: the same CA and server
certificate files, which the first start puts in the shared database for both) and the
same PostgreSQL database, deliver through MX records served by a
loopback DNS server to Postfix's ``smtp-sink``, which holds every DATA reply for a second
(``-w 1``) so that deliveries are in flight and dumps each finished transaction to a file.
Clients submit over SMTPS and the API to both nodes while they deliver; node A is killed
with SIGKILL while it holds leases on recipients it has not finished. Then:

- every message either node acknowledged (250 or 202) is in the sink's dumps at least
  once, with the bytes the database holds, and the database holds it exactly once;
- duplicates are counted (printed, and written to ``failover.json`` in the test's
  directory) and bounded by the dead node's in-flight window: each one is a recipient A
  held at the kill, and there are at most ``delivery.concurrency`` of them (A had at most
  that many transactions open; smtp-sink drops a transaction whose client vanished
  before its reply, so only a reply A received but had not yet recorded is sent twice);
- the survivor records the last of A's held recipients within ``storage.lease`` + 10 s
  of the kill (the recipients' ``updated_at``, written by the survivor's clock; both nodes
  are on this host).

Everything is on loopback and bounded: 15 s leases (the shortest ``storage.lease``
allows), a light paced load, well under two minutes in all.
"""

from __future__ import annotations

import http.client
import json
import shutil
import smtplib
import ssl
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.names import dns
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from rail.config.schema import Storage
from tests.integration.processes import (
    Server,
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_port,
)
from tests.integration.stores import (
    Backend,
    backend_for,
    pending_count,
    status_counts,
    stored_messages,
)
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import read_dump, start_smtp_sink

_LEASE = 15.0
_CONCURRENCY = 10
_DOMAINS = 5
_SINK_DELAY = "1"  # seconds smtp-sink holds each DATA reply
_PACE = 0.15  # seconds between one client's messages
_POLL = 0.1


def _note(text: str) -> None:
    """Into the test log (``_trial_temp/test.log``) and onto stderr."""
    log.msg(text)
    print(text, file=sys.stderr)


def _sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


@attrs.frozen
class _Ack:
    """A message a node acknowledged: which node, how, its token and (SMTP) bytes sent."""

    node: str
    channel: str
    token: str
    sent: bytes | None


class _Load:
    """Paced clients, SMTPS and API, against one node; records every acknowledgement."""

    def __init__(self, node: str, directory: Path, smtp_port: int, https_port: int) -> None:
        self.node = node
        self.context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        self.context.load_cert_chain(str(directory / "app.crt"), str(directory / "app.key"))
        self.smtp_port, self.https_port = smtp_port, https_port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, _Ack] = {}  # queue id -> what was acknowledged
        self.errors = 0
        self.threads = [threading.Thread(target=self._smtp, args=(n,)) for n in range(2)] + [
            threading.Thread(target=self._api, args=(0,))
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _failed(self) -> None:
        with self.lock:
            self.errors += 1
        self.stop.wait(0.2)

    def _smtp(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP_SSL(
                    "127.0.0.1", self.smtp_port, context=self.context, timeout=5
                ) as client:
                    client.ehlo("failover.test")
                    while not self.stop.wait(_PACE):
                        n += 1
                        token = f"{self.node}s{worker}-{n}"
                        data = (
                            f"From: app@rail.test\r\nTo: <{token}@d{n % _DOMAINS}.failover.test>"
                            f"\r\nSubject: {token}\r\nDate: Sat, 5 Dec 2026 02:00:00 +0000\r\n"
                            f"Message-ID: <{token}@failover.test>\r\n\r\n{token}\r\n"
                        ).encode()
                        client.mail("app@rail.test")
                        client.rcpt(f"{token}@d{n % _DOMAINS}.failover.test")
                        code, reply = client.data(data)
                        if code == 250:
                            queue_id = reply.decode().rsplit(" ", 1)[-1]
                            with self.lock:
                                self.acked[queue_id] = _Ack(self.node, "smtp", token, data)
            except (OSError, smtplib.SMTPException):
                self._failed()

    def _api(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.context, timeout=5
            )
            try:
                while not self.stop.wait(_PACE):
                    n += 1
                    token = f"{self.node}a{worker}-{n}"
                    body = json.dumps(
                        {
                            "from": "app@rail.test",
                            "to": [f"{token}@d{n % _DOMAINS}.failover.test"],
                            "subject": token,
                            "body_text": f"{token} body",
                        }
                    )
                    connection.request(
                        "POST", "/api/v1/send", body, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status == 202:
                        with self.lock:
                            self.acked[json.loads(answer)["id"]] = _Ack(
                                self.node, "api", token, None
                            )
            except (OSError, http.client.HTTPException, ValueError):
                self._failed()
            finally:
                connection.close()


def _held_by(backend: Backend, data_dir: Path, pid: int) -> list[tuple[str, int]]:
    """The recipients (message id, idx) that the node with process id ``pid`` holds
    leases on and has not finished (node ids are ``host/pid/ulid``)."""
    with backend.connect(data_dir) as connection:
        rows = connection.execute(
            "SELECT message_id, idx FROM recipients WHERE claimed_by LIKE ?"
            " AND status IN ('queued', 'deferred')",
            (f"%/{pid}/%",),
        ).fetchall()
    return [(str(message_id), int(idx)) for message_id, idx in rows]


def _finished_at(backend: Backend, data_dir: Path, held: list[tuple[str, int]]) -> float:
    """When the last of ``held`` was recorded (its ``updated_at``)."""
    with backend.connect(data_dir) as connection:
        return max(
            float(
                connection.execute(
                    "SELECT updated_at FROM recipients WHERE message_id = ? AND idx = ?",
                    (message_id, idx),
                ).fetchone()[0]
            )
            for message_id, idx in held
        )


def _pending(backend: Backend, data_dir: Path) -> int:
    with backend.connect(data_dir) as connection:
        return pending_count(connection)


async def _stop_loads(loads: list[_Load]) -> None:
    """Stop the client threads without blocking the reactor."""
    done = threading.Thread(target=lambda: [load.join() for load in loads])
    done.start()
    while done.is_alive():
        await _sleep(0.05)


class FailoverTests(TestCase):
    # Against a hang only; the run takes about 40 s.
    timeout = 110

    async def test_survivor_delivers_the_dead_nodes_mail(self) -> None:
        """With two nodes on one database under load, a SIGKILL of one mid-delivery loses
        nothing acknowledged: every message reaches the MX at least once, duplicates are
        only recipients the dead node held (at most its concurrency), and the survivor
        finishes the dead node's recipients within the lease + 10 s."""
        if "lease" not in attrs.fields_dict(Storage):
            raise SkipTest("job leases (storage.lease) are not on this branch")
        backend = backend_for(self, "postgresql")
        root = Path(self.mktemp()).absolute()
        a_dir, b_dir = root / "a", root / "b"
        ports = {name: {"https": free_port(), "submission": free_port()} for name in ("a", "b")}
        out, err, code = await rail(
            "init",
            "--dev",
            str(a_dir),
            "--https-port",
            str(ports["a"]["https"]),
            "--submission-port",
            str(ports["a"]["submission"]),
            *other_listeners(),
        )
        self.assertEqual(code, 0, err)
        # Node B: the same CA, registry, server certificate and client certificate.
        shutil.copytree(a_dir, b_dir)

        records: dict[str, list[Any]] = {
            f"d{d}.failover.test": [dns.Record_MX(10, b"mx.failover.test", ttl=3600)]
            for d in range(_DOMAINS)
        }
        records["mx.failover.test"] = [dns.Record_A("127.0.0.1", ttl=3600)]
        dns_server = await start_dns(reactor, records)
        self.addCleanup(dns_server.stop)
        dumps = root / "sink"
        dumps.mkdir()
        sink = await start_smtp_sink(reactor, "-w", _SINK_DELAY, dump_dir=dumps)
        self.addCleanup(sink.stop)

        for name, directory in (("a", a_dir), ("b", b_dir)):
            config_path = directory / "rail.yaml"
            document = yaml.safe_load(config_path.read_text())
            document["listen"] = {
                "https": f"tcp:{ports[name]['https']}:interface=127.0.0.1",
                "submission": f"tcp:{ports[name]['submission']}:interface=127.0.0.1",
                "inbound": None,
                "http": None,
                "dns": None,
            }
            document["shutdown"]["drain_delay"] = "0s"
            document["storage"]["lease"] = f"{_LEASE:.0f}s"
            document["delivery"].update(
                hold=False,
                nameservers=[f"127.0.0.1:{dns_server.port}"],
                port=sink.port,
                retry=["1s"],
                concurrency=_CONCURRENCY,
                per_destination=_CONCURRENCY,
            )
            config_path.write_text(yaml.safe_dump(document))
            backend.configure(config_path)

        servers: dict[str, Server] = {}
        loads: list[_Load] = []

        async def stop_all() -> None:
            await _stop_loads(loads)
            for name, server in servers.items():
                if not server.ended.called:
                    server.signal("TERM")
                await server.ended
                (root / f"twistd-{name}.log").write_bytes(server.output)

        self.addCleanup(lambda: Deferred.fromCoroutine(stop_all()))

        for name, directory in (("a", a_dir), ("b", b_dir)):
            servers[name] = start_twistd(["rail", "--config", str(directory / "rail.yaml")])
            await wait_for_port(ports[name]["submission"], servers[name])
            await wait_for_port(ports[name]["https"], servers[name])
        backend.require_used(a_dir / "data")
        node_a, node_b = servers["a"], servers["b"]
        a_pid = node_a.transport.pid

        # 1. Load on both nodes; kill A once it has delivered some mail and holds leases
        #    on recipients it has not finished.
        loads[:] = [
            _Load(name, a_dir, ports[name]["submission"], ports[name]["https"])
            for name in ("a", "b")
        ]
        for load in loads:
            load.start()
        began = time.monotonic()
        while True:
            for server in servers.values():
                if server.ended.called:
                    self.fail(f"a node exited:\n{server.output.decode()[-3000:]}")
            if time.monotonic() - began > 3 and sum(1 for _ in dumps.iterdir()) >= 10:
                if len(_held_by(backend, a_dir / "data", a_pid)) >= 3:
                    break
            if time.monotonic() - began > 40:
                self.fail("node A never held unfinished leases under load")
            await _sleep(_POLL)
        node_a.signal("KILL")
        killed_at = time.time()
        self.assertEqual(await node_a.ended, -9)
        held = _held_by(backend, a_dir / "data", a_pid)
        await _stop_loads(loads)
        acked = {**loads[0].acked, **loads[1].acked}
        by_node = Counter(ack.node for ack in acked.values())
        self.assertGreater(by_node["a"], 0)
        self.assertGreater(by_node["b"], 0)
        self.assertGreater(len(held), 0)

        # 2. The survivor finishes everything, A's held recipients after their lease.
        while _pending(backend, a_dir / "data"):
            if node_b.ended.called:
                self.fail(f"node B exited:\n{node_b.output.decode()[-3000:]}")
            if time.time() - killed_at > _LEASE + 40:
                self.fail(f"{_pending(backend, a_dir / 'data')} recipients still pending")
            await _sleep(0.25)
        finished = _finished_at(backend, a_dir / "data", held) - killed_at
        node_b.signal("TERM")
        self.assertEqual(await node_b.ended, -15, node_b.output.decode()[-3000:])
        await sink.stop()

        # 3. Every acknowledged message is stored once and reached the sink at least once.
        with backend.connect(a_dir / "data") as connection:
            stored = {message.id: message for message in stored_messages(connection)}
            counts = status_counts(connection)
        missing = sorted(set(acked) - set(stored))
        self.assertEqual(missing, [], "acknowledged messages missing from the database")
        subjects = Counter(
            line.split(b": ", 1)[1]
            for message in stored.values()
            for line in message.data.split(b"\r\n")
            if line.startswith(b"Subject: ")
        )
        self.assertEqual([s for s, n in subjects.items() if n > 1], [], "stored twice")
        id_of = {ack.token: queue_id for queue_id, ack in acked.items()}  # unique per run
        seen: Counter[str] = Counter()
        for path in dumps.iterdir():
            dump = read_dump(path.read_bytes())
            token = dump.rcpt_args[0].strip("<>").split("@")[0]
            seen[token] += 1
            queue_id = id_of.get(token)
            if queue_id is None:
                continue  # accepted, but the client died before reading the reply
            message = stored[queue_id]
            self.assertTrue(dump.message.endswith(message.data.replace(b"\r\n", b"\n")), path)
        never = sorted(token for token in id_of if seen[token] == 0)
        self.assertEqual(never, [], f"{len(never)} acknowledged messages never delivered")
        for queue_id, ack in acked.items():
            data = stored[queue_id].data
            if ack.sent is not None:
                self.assertTrue(data.endswith(b"\r\n" + ack.sent), queue_id)
            else:
                self.assertIn(f"Subject: {ack.token}\r\n".encode(), data)
        self.assertEqual(
            (counts["queued"], counts["deferred"], counts["bounced"], counts["failed"]),
            (0, 0, 0, 0),
            counts,
        )

        # 4. Duplicates: only recipients A held, at most its in-flight window.
        held_tokens = {stored[message_id].recipients[idx].split("@")[0] for message_id, idx in held}
        twice = {token: n for token, n in seen.items() if n > 1}
        duplicates = sum(n - 1 for n in twice.values())
        report = {
            "acknowledged": dict(by_node),
            "stored": len(stored),
            "sink_transactions": sum(seen.values()),
            "held_by_dead_node_at_kill": len(held),
            "duplicates": duplicates,
            "duplicated_tokens": sorted(twice),
            "window": _CONCURRENCY,
            "dead_node_work_finished_after_s": round(finished, 2),
            "lease_s": _LEASE,
            "client_errors": {load.node: load.errors for load in loads},
        }
        (root / "failover.json").write_text(json.dumps(report, indent=2) + "\n")
        _note(f"failover test: {json.dumps(report)}")
        self.assertEqual(sorted(set(twice) - held_tokens), [], "a duplicate A did not hold")
        self.assertLessEqual(duplicates, _CONCURRENCY)
        self.assertLessEqual(finished, _LEASE + 10.0)
