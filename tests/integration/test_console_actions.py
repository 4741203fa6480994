"""The console's acceptance chart, certificate issuing and DKIM rotation on a running
server over real HTTPS with client certificates (mTLS)."""

from __future__ import annotations

import json
import smtplib
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from tests.console.test_pages import chart_values
from tests.integration.test_console import issue_admin
from tests.integration.test_queue_cli import _RunningRail


def _submit(port: int, ca_file: Path, pair: tuple[Path, Path], to: str) -> None:
    """One message over SMTPS (port 465 style) with ``pair`` (blocking)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(pair[0]), str(pair[1]))
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=10) as client:
        client.sendmail("app@rail.test", [to], b"From: app@rail.test\r\nSubject: hi\r\n\r\nhi\r\n")


class _Console(_RunningRail):
    def setUp(self) -> None:
        super().setUp()
        self.admin = issue_admin(self.config_path, self.base / "admin")

    def get(self, path: str, cert: Any = None) -> Any:
        return self.request("GET", path, cert=self.admin if cert is None else cert)

    def post(self, path: str, fields: dict[str, str], cert: Any = None) -> Any:
        return self.request(
            "POST",
            path,
            cert=self.admin if cert is None else cert,
            body=urlencode(fields).encode(),
            extra_headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


class AcceptedChartTests(_Console):
    @inlineCallbacks
    def test_sending_moves_the_chart(self) -> Any:
        """A message sent through the API, a batch of two and one over SMTPS each count
        in the overview's "Messages accepted" charts (hour and day) and in /stats'
        acceptance figures; the delivered chart does not move (delivery is held)."""
        before = yield self.get("/console/")
        self.assertEqual(before.status, 200)
        self.assertEqual(sum(chart_values(before.body, "Messages accepted, last hour")), 0)
        yield self.send("bob@example.com")
        batch = yield self.request(
            "POST",
            "/api/v1/send/batch",
            cert=self.app.pair,
            body=json.dumps(
                {
                    "messages": [
                        {"from": "app@rail.test", "to": [to], "subject": "s", "body_text": "b"}
                        for to in ("c@example.com", "d@example.com")
                    ]
                }
            ).encode(),
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(batch.status, 200, batch.body)
        yield deferToThread(_submit, self.smtps, self.ca_file, self.app.pair, "e@example.com")
        after = yield self.get("/console/")
        self.assertEqual(sum(chart_values(after.body, "Messages accepted, last hour")), 4)
        self.assertEqual(sum(chart_values(after.body, "Messages accepted, last 24 hours")), 4)
        self.assertEqual(sum(chart_values(after.body, "Recipients delivered, last hour")), 0)
        stats = yield self.request("GET", "/stats")
        document = json.loads(stats.body)
        self.assertEqual(document["accepted_since_start"], 4)
        self.assertEqual(document["accepted_per_minute"]["1m"], 4.0)
