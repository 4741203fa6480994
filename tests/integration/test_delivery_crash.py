"""Crash safety of delivery: SIGKILL while thousands of messages go out, restart, none lost.

Rail's queue is filled through its own SMTPS intake (delivery held), then Rail restarts with
delivery on, towards Postfix's ``smtp-sink`` on loopback, found through MX records served
by a loopback DNS server. While the sink has received between 20% and 80% of the messages,
Rail is killed with SIGKILL, restarted, and left to finish. Afterwards every message must be
in the sink's dumps at least once, ending with exactly the bytes the queue holds (after
the DKIM fields Rail adds; smtp-sink writes LF line ends), and every recipient must be
``sent``, none bounced. The twistd logs are kept next to the queue (``twistd-N.log``).

A message the sink accepted just before the kill, whose result was not yet on disk, goes
out again after the restart: the safe side. The test prints how many were sent twice.

The point of the kill is drawn from a seeded random generator; the test prints the seed,
and ``RAIL_CRASH_SEED=N`` repeats a run's kill point. ``RAIL_CRASH_MESSAGES`` changes the
number of messages (10,000 by default), e.g. for a longer soak run. This is a correctness
test: it waits for progress as long as trial's timeout allows and asserts no speed; how
fast the intake, the delivery and the recovery after a SIGKILL are is measured by
``bench/submit.py --fill`` and ``bench/deliver.py --kill-at`` (bench/README.md).

The test runs on each store backend: SQLite under the data directory, and a PostgreSQL
database of the test cluster, whose rows are read back directly
(:mod:`tests.integration.stores`).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import ssl
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.python import log
from twisted.trial.unittest import TestCase

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
    attempt_counts,
    backend_for,
    pending_count,
    status_counts,
    stored_messages,
)
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import read_dump, start_smtp_sink

_MESSAGES = int(os.environ.get("RAIL_CRASH_MESSAGES", "10000"))
_DOMAINS = 10
_CLIENTS = 20
_SENDER = "app@rail.test"
_POLL = 0.05
_MESSAGE_ID = re.compile(rb"(?mi)^Message-ID: <(crash-\d+)@rail\.test>$")


def _recipient(n: int) -> str:
    return f"user{n}@d{n % _DOMAINS}.crash.test"


def _message(n: int) -> bytes:
    """Message ``n``: its token in the Message-ID and Subject; a body line that starts
    with a dot, so both SMTP legs stuff and unstuff it."""
    token = f"crash-{n}"
    return (
        f"From: App <{_SENDER}>\r\nTo: <{_recipient(n)}>\r\nSubject: {token}\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{token}@rail.test>\r\n"
        f"\r\nHello {n},\r\n.a line that starts with a dot\r\n-- \r\nRail\r\n"
    ).encode("ascii")


# -- intake ----------------------------------------------------------------------------------


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multi-line) SMTP reply: its code and last line."""
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


async def _expect(reader: asyncio.StreamReader, code: int, what: str) -> bytes:
    got, line = await _reply(reader)
    if got != code:
        raise AssertionError(f"{what}: expected {code}, got {line!r}")
    return line


async def _submit_some(
    context: ssl.SSLContext, port: int, numbers: list[int], queued: dict[int, str]
) -> None:
    """One SMTPS session submitting ``numbers``: MAIL, RCPT and DATA in one write
    (PIPELINING), then the message; records each message's queue id in ``queued``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        await _expect(reader, 220, "greeting")
        writer.write(b"EHLO app.rail.test\r\n")
        await _expect(reader, 250, "EHLO")
        for n in numbers:
            writer.write(f"MAIL FROM:<{_SENDER}>\r\nRCPT TO:<{_recipient(n)}>\r\nDATA\r\n".encode())
            await _expect(reader, 250, "MAIL")
            await _expect(reader, 250, "RCPT")
            await _expect(reader, 354, "DATA")
            writer.write(_message(n).replace(b"\r\n.", b"\r\n..") + b".\r\n")
            line = await _expect(reader, 250, "end of data")
            match = re.search(rb"queued as (\w+)", line)
            assert match is not None, line
            queued[n] = match[1].decode()
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    finally:
        writer.close()


def _submit_all(directory: Path, port: int, count: int) -> dict[int, str]:
    """Submit messages 0 .. count-1 over ``_CLIENTS`` parallel sessions (in a thread)."""
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(str(directory / "app.crt"), str(directory / "app.key"))
    queued: dict[int, str] = {}

    async def run() -> None:
        await asyncio.gather(
            *(
                _submit_some(context, port, list(range(c, count, _CLIENTS)), queued)
                for c in range(_CLIENTS)
            )
        )

    asyncio.run(run())
    return queued


# -- observing -------------------------------------------------------------------------------


def _counts(backend: Backend, data_dir: Path) -> dict[str, int]:
    with backend.connect(data_dir) as connection:
        return status_counts(connection)


def _pending(backend: Backend, data_dir: Path) -> int:
    with backend.connect(data_dir) as connection:
        return pending_count(connection)


def _dump_files(directory: Path) -> int:
    """Files in the sink's dump directory: finished transactions, and at most one being
    written per open session."""
    with os.scandir(directory) as entries:
        return sum(1 for _ in entries)


def _sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


def _note(text: str) -> None:
    """Into the test log (``_trial_temp/test.log``) and onto stderr, where a person
    running the test sees it."""
    log.msg(text)
    print(text, file=sys.stderr)


def _seed() -> int:
    """``RAIL_CRASH_SEED`` if set, else a fresh seed (printed, so a run can be repeated)."""
    text = os.environ.get("RAIL_CRASH_SEED", "").strip()
    return int(text) if text else random.SystemRandom().randrange(2**32)


class _DeliveryCrash:
    """The delivery crash test, mixed into a TestCase per backend (``backend``)."""

    backend = "sqlite"
    # Only against a hang: each step waits for progress, not for a deadline; the run
    # takes well under a minute on a 2-core machine (speed is bench/deliver.py's job).
    timeout = 900

    async def test_every_message_delivered_after_sigkill(self) -> None:
        """After a SIGKILL in the middle of delivering the queue and a restart, every
        queued message reaches the receiving server at least once with the queued bytes,
        every recipient ends ``sent`` and nothing bounces; the duplicates are counted."""
        seed = _seed()
        _note(f"delivery crash test: seed {seed} (repeat with RAIL_CRASH_SEED={seed})")
        rng = random.Random(seed)
        backend = backend_for(self, self.backend)
        directory = Path(self.mktemp()).absolute()
        https_port, smtps_port = free_port(), free_port()
        out, err, code = await rail(
            "init",
            "--dev",
            str(directory),
            "--https-port",
            str(https_port),
            "--submission-port",
            str(smtps_port),
            *other_listeners(),
        )
        self.assertEqual(code, 0, err)
        config_path = directory / "rail.yaml"
        backend.configure(config_path)
        data_dir = directory / "data"

        records: dict[str, list[Any]] = {
            f"d{d}.crash.test": [dns.Record_MX(10, b"mx.crash.test", ttl=3600)]
            for d in range(_DOMAINS)
        }
        records["mx.crash.test"] = [dns.Record_A("127.0.0.1", ttl=3600)]
        dns_server = await start_dns(reactor, records)
        self.addCleanup(dns_server.stop)
        dumps = directory / "sink"
        dumps.mkdir()
        sink = await start_smtp_sink(reactor, dump_dir=dumps)
        self.addCleanup(sink.stop)

        servers: list[Server] = []

        async def start(**delivery: object) -> Server:
            document = yaml.safe_load(config_path.read_text())
            document["shutdown"]["drain_delay"] = "0s"
            document["delivery"].update(delivery)
            config_path.write_text(yaml.safe_dump(document))
            server = start_twistd(["rail", "--config", str(config_path)])
            servers.append(server)
            await wait_for_port(smtps_port, server)
            return server

        async def stop_all() -> None:
            for n, server in enumerate(servers):
                if not server.ended.called:
                    server.signal("TERM")
                await server.ended
                (directory / f"twistd-{n}.log").write_bytes(server.output)

        self.addCleanup(lambda: Deferred.fromCoroutine(stop_all()))

        # 1. Fill the queue through Rail's own intake, delivery held.
        server = await start(hold=True)
        backend.require_used(data_dir)
        queued = await deferToThread(_submit_all, directory, smtps_port, _MESSAGES)
        server.signal("TERM")
        self.assertEqual(await server.ended, -15, server.output.decode()[-3000:])
        self.assertEqual(len(queued), _MESSAGES)
        self.assertEqual(
            _counts(backend, data_dir),
            {
                "queued": _MESSAGES,
                "deferred": 0,
                "sent": 0,
                "bounced": 0,
                "failed": 0,
                "deleted": 0,
            },
        )

        # 2. Deliver; SIGKILL while the sink holds 20% to 80% of the messages.
        fraction = rng.uniform(0.2, 0.8)
        # Nothing should be deferred; if something is, a 1 s retry keeps the test short,
        # and the attempt counts printed at the end show it.
        server = await start(
            hold=False,
            nameservers=[f"127.0.0.1:{dns_server.port}"],
            port=sink.port,
            retry=["1s"],
        )
        while _dump_files(dumps) < fraction * _MESSAGES:
            if server.ended.called:
                self.fail(f"Rail exited during delivery:\n{server.output.decode()[-3000:]}")
            await _sleep(_POLL)
        server.signal("KILL")
        self.assertEqual(await server.ended, -9)
        at_kill = _dump_files(dumps), _counts(backend, data_dir)
        self.assertLess(at_kill[1]["sent"], _MESSAGES, "everything was sent before the kill")

        # 3. Restart and let it finish.
        server = await start()
        while _pending(backend, data_dir):
            if server.ended.called:
                self.fail(f"Rail exited after restart:\n{server.output.decode()[-3000:]}")
            await _sleep(0.25)
        server.signal("TERM")
        self.assertEqual(await server.ended, -15, server.output.decode()[-3000:])
        await sink.stop()

        # 4. Every message is in the dumps at least once, with the queued bytes.
        with backend.connect(data_dir) as connection:
            stored = {message.id: message for message in stored_messages(connection)}
            attempts = attempt_counts(connection)
        self.assertEqual(len(stored), _MESSAGES, "the queue holds other messages (a DSN?)")
        by_token = {f"crash-{n}": stored[queue_id] for n, queue_id in queued.items()}
        seen: Counter[str] = Counter()
        for path in dumps.iterdir():
            dump = read_dump(path.read_bytes())
            match = _MESSAGE_ID.search(dump.message)
            self.assertIsNotNone(match, f"{path}: no Message-ID of this test")
            assert match is not None
            token = match[1].decode()
            message = by_token[token]
            self.assertEqual(dump.rcpt_args, tuple(f"<{r}>" for r in message.recipients), path)
            self.assertTrue(dump.message.endswith(message.data.replace(b"\r\n", b"\n")), path)
            seen[token] += 1
        missing = sorted(set(by_token) - set(seen), key=lambda t: int(t.split("-")[1]))
        self.assertEqual(missing, [], f"{len(missing)} messages never reached the sink")

        # 5. The queue agrees: everything sent, nothing pending, nothing bounced.
        self.assertEqual(
            _counts(backend, data_dir),
            {
                "queued": 0,
                "deferred": 0,
                "sent": _MESSAGES,
                "bounced": 0,
                "failed": 0,
                "deleted": 0,
            },
        )
        duplicates = sum(count - 1 for count in seen.values())
        dumped, counts = at_kill
        _note(
            f"delivery crash test ({self.backend}): seed {seed}; {_MESSAGES} messages"
            f" to {_DOMAINS} domains;"
            f" SIGKILL at {fraction:.0%} with {dumped} files in the sink and"
            f" {counts['sent']} recorded sent; {duplicates} duplicate deliveries"
            f" ({sum(1 for c in seen.values() if c > 1)} messages sent more than once);"
            f" attempts per recipient {dict(sorted(attempts.items()))}"
        )


class SQLiteDeliveryCrashTests(_DeliveryCrash, TestCase):
    backend = "sqlite"


class PostgreSQLDeliveryCrashTests(_DeliveryCrash, TestCase):
    backend = "postgresql"
