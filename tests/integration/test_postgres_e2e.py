"""``twistd rail`` with ``storage.backend: postgresql``, end to end: mail submitted over
SMTPS (465-style implicit TLS with a client certificate) and the HTTPS API is stored in
the database (nothing in ``data_dir/queue``) and delivered to Postfix's ``smtp-sink``,
found through an MX record served by a loopback DNS server."""

from __future__ import annotations

import http.client
import json
import smtplib
import ssl
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import TestCase

from tests.integration.processes import (
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_port,
)
from tests.store.test_contract import pg_sql
from tests.support.dnsserver import start_dns
from tests.support.postgres import postgres_dsn
from tests.support.smtpsink import start_smtp_sink

_EACH = 5


def _sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


def _submit(directory: Path, smtps_port: int, https_port: int) -> list[str]:
    """``_EACH`` messages over SMTPS and ``_EACH`` through the API; their queue ids."""
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(str(directory / "app.crt"), str(directory / "app.key"))
    ids: list[str] = []
    with smtplib.SMTP_SSL("127.0.0.1", smtps_port, context=context, timeout=10) as client:
        client.ehlo("pg.test")
        for n in range(_EACH):
            data = (
                f"From: app@rail.test\r\nTo: smtp{n}@dest.test\r\nSubject: smtp {n}\r\n"
                f"\r\nHello {n}\r\n"
            ).encode()
            refused = client.sendmail("app@rail.test", [f"smtp{n}@dest.test"], data)
            if refused:
                raise AssertionError(f"refused: {refused}")
    connection = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=10)
    try:
        for n in range(_EACH):
            body = json.dumps(
                {
                    "from": "app@rail.test",
                    "to": [f"api{n}@dest.test"],
                    "subject": f"api {n}",
                    "body_text": "hello",
                }
            )
            connection.request("POST", "/api/v1/send", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 202:
                raise AssertionError(f"API answered {response.status}: {answer}")
            ids.append(answer["id"])
    finally:
        connection.close()
    return ids


class PostgresEndToEndTests(TestCase):
    timeout = 120

    async def test_accept_and_deliver(self) -> None:
        """Ten messages accepted over SMTPS and the API are in the PostgreSQL queue, are
        all delivered to the sink and end ``sent``; no SQLite queue is made, and SIGTERM
        stops Rail cleanly."""
        dsn = postgres_dsn(self)
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
        dns_server = await start_dns(
            reactor,
            {
                "dest.test": [dns.Record_MX(10, b"mx.dest.test", ttl=3600)],
                "mx.dest.test": [dns.Record_A("127.0.0.1", ttl=3600)],
            },
        )
        self.addCleanup(dns_server.stop)
        dumps = directory / "sink"
        dumps.mkdir()
        sink = await start_smtp_sink(reactor, dump_dir=dumps)
        self.addCleanup(sink.stop)
        config_path = directory / "rail.yaml"
        document = yaml.safe_load(config_path.read_text())
        document["shutdown"]["drain_delay"] = "0s"
        document.setdefault("storage", {}).update({"backend": "postgresql", "dsn": dsn})
        document["delivery"].update(
            {"hold": False, "nameservers": [f"127.0.0.1:{dns_server.port}"], "port": sink.port}
        )
        config_path.write_text(yaml.safe_dump(document))

        server = start_twistd(["rail", "--config", str(config_path)])

        async def stopped() -> None:
            if not server.ended.called:
                server.signal("TERM")
            await server.ended
            (directory / "twistd.log").write_bytes(server.output)

        self.addCleanup(lambda: Deferred.fromCoroutine(stopped()))
        await wait_for_port(smtps_port, server)
        api_ids = await deferToThread(_submit, directory, smtps_port, https_port)
        self.assertEqual(len(api_ids), _EACH)

        for _ in range(600):
            sent = pg_sql(dsn, "SELECT count(*) FROM recipients WHERE status = 'sent'")[0][0]
            if sent == 2 * _EACH or server.ended.called:
                break
            await _sleep(0.1)
        self.assertEqual(sent, 2 * _EACH, server.output.decode()[-3000:])
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM messages")[0][0], 2 * _EACH)
        stored = {row[0] for row in pg_sql(dsn, "SELECT id FROM messages")}
        self.assertTrue(set(api_ids) <= stored)
        self.assertFalse((directory / "data" / "queue" / "queue.sqlite3").exists())
        server.signal("TERM")
        self.assertEqual(await server.ended, -15, server.output.decode()[-3000:])
        await sink.stop()
        self.assertEqual(len(list(dumps.iterdir())), 2 * _EACH)
