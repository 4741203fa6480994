"""A TLS-RPT report mailed to the address Rail publishes (``dns.tls_rpt``) on port 25.

A real ``twistd rail`` receives a gzip report from smtplib (the stand-in for another
sender's MTA) and shows it in ``/metrics`` and its log; the message reaches no client
webhook and the inbound spool stays empty.
"""

from __future__ import annotations

import email.policy
import gzip
import json
import smtplib
import sqlite3
import urllib.request
from email.message import EmailMessage
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.store.schema import database_path
from tests.interop.helpers import RunningRail, start_rail

_REPORT = {
    "organization-name": "Big Mail",
    "date-range": {
        "start-datetime": "2026-12-03T00:00:00Z",
        "end-datetime": "2026-12-03T23:59:59Z",
    },
    "contact-info": "tls@bigmail.example",
    "report-id": "bm-42",
    "policies": [
        {
            "policy": {"policy-type": "sts", "policy-domain": "rail.test"},
            "summary": {"total-successful-session-count": 7, "total-failure-session-count": 2},
            "failure-details": [
                {"result-type": "certificate-host-mismatch", "failed-session-count": 2}
            ],
        }
    ],
}


def _send(rail: RunningRail) -> tuple[int, bytes]:
    """Mail the report to Rail's port 25 (blocking)."""
    message = EmailMessage()
    message["From"] = "noreply-tls@bigmail.example"
    message["To"] = "tlsrpt@rail.test"
    message["Subject"] = "Report Domain: rail.test Submitter: bigmail.example Report-ID: <bm-42>"
    message["TLS-Report-Domain"] = "rail.test"
    message["TLS-Report-Submitter"] = "bigmail.example"
    message.set_content("report attached")
    message.add_attachment(
        gzip.compress(json.dumps(_REPORT).encode()),
        maintype="application",
        subtype="tlsrpt+gzip",
        filename="bigmail.example!rail.test!1!2.json.gz",
    )
    with smtplib.SMTP("127.0.0.1", rail.inbound_port, timeout=10) as client:
        client.ehlo("mx.bigmail.example")
        client.mail("noreply-tls@bigmail.example")
        client.rcpt("tlsrpt@rail.test")
        return client.data(message.as_bytes(policy=email.policy.SMTP))


def _metrics(rail: RunningRail) -> str:
    """``/metrics`` from loopback (allowed by default), verifying Rail's certificate."""
    context = rail.smtp_context(client_certificate=False)
    with urllib.request.urlopen(rail.url("/metrics"), context=context, timeout=10) as response:
        text: str = response.read().decode()
        return text


def _spooled(rail: RunningRail) -> int:
    """Inbound messages in the spool (none expected)."""
    connection = sqlite3.connect(f"file:{database_path(rail.queue)}?mode=ro", uri=True)
    try:
        (count,) = connection.execute("SELECT count(*) FROM inbound").fetchone()
        return int(count)
    finally:
        connection.close()


class ReceivedReportTests(TestCase):
    timeout = 120

    async def test_report_to_own_rua_becomes_metrics(self) -> None:
        """The report is answered 250, counted per sender and result type in /metrics,
        logged with its id and sender, and not spooled for any webhook."""

        def configure(document: dict[str, Any]) -> None:
            document.setdefault("dns", {})["tls_rpt"] = "mailto:tlsrpt@rail.test"

        rail = await start_rail(self, configure)
        code, text = await deferToThread(_send, rail)
        self.assertEqual((code, text), (250, b"2.0.0 Ok: report received"))
        wanted = (
            'rail_tlsrpt_received_failures_total{result_type="certificate-host-mismatch",'
            'sender_org="Big Mail"} 2.0'
        )
        metrics = ""
        for _ in range(50):
            metrics = await deferToThread(_metrics, rail)
            if wanted in metrics:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertIn(wanted, metrics)
        self.assertIn('rail_tlsrpt_received_reports_total{sender_org="Big Mail"} 1.0', metrics)
        self.assertEqual(await deferToThread(_spooled, rail), 0)
        self.assertIn("TLS-RPT report bm-42 from Big Mail", rail.server.output.decode())
