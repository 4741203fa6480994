"""Tests for receiving TLS-RPT reports: the parser, the mailbox (metric and log), and the
port-25 session that hands report mail to it instead of a webhook."""

from __future__ import annotations

import gzip
import json
from email.message import EmailMessage
from typing import Any

from prometheus_client import generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import Inbound
from rail.smtp.inbound import InboundSession
from rail.smtp.server import RailESMTP
from rail.testing import MemoryStore
from rail.tlsrpt.mailbox import MAX_ORGS, ReportMailbox, report_address
from rail.tlsrpt.received import MAX_REPORT, ReportError, read_report
from tests.smtp.helpers import LIMITS
from tests.smtp.test_inbound import TABLE, FakeVerifier

_REPORT: dict[str, Any] = {
    "organization-name": "Big Mail",
    "date-range": {
        "start-datetime": "2026-12-03T00:00:00Z",
        "end-datetime": "2026-12-03T23:59:59Z",
    },
    "contact-info": "tls@bigmail.example",
    "report-id": "bm-1",
    "policies": [
        {
            "policy": {"policy-type": "sts", "policy-domain": "rail.test"},
            "summary": {"total-successful-session-count": 10, "total-failure-session-count": 3},
            "failure-details": [
                {"result-type": "certificate-expired", "failed-session-count": 2},
                {"result-type": "made-up", "failed-session-count": 1},
            ],
        },
        {
            "policy": {"policy-type": "no-policy-found", "policy-domain": "other.test"},
            "summary": {"total-successful-session-count": 4, "total-failure-session-count": 0},
        },
    ],
}


def _mail(body: bytes, kind: str = "application/tlsrpt+gzip", name: str = "r.json.gz") -> bytes:
    message = EmailMessage()
    message["From"] = "noreply@bigmail.example"
    message["To"] = "tlsrpt@rail.test"
    message["Subject"] = "Report Domain: rail.test"
    message.set_content("report attached")
    maintype, subtype = kind.split("/")
    message.add_attachment(body, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes().replace(b"\n", b"\r\n")


def _gzip_report(report: dict[str, Any] = _REPORT) -> bytes:
    return gzip.compress(json.dumps(report).encode())


class ReadReportTests(SynchronousTestCase):
    def test_gzip_attachment(self) -> None:
        """The application/tlsrpt+gzip part is inflated and summarised per policy."""
        report = read_report(_mail(_gzip_report()))
        self.assertEqual(
            (report.organization, report.report_id, report.failures), ("Big Mail", "bm-1", 3)
        )
        first, second = report.policies
        self.assertEqual(
            (first.domain, first.successes, first.failures, dict(first.by_result)),
            ("rail.test", 10, 3, {"certificate-expired": 2, "made-up": 1}),
        )
        self.assertEqual(
            (second.domain, second.failures, dict(second.by_result)), ("other.test", 0, {})
        )

    def test_plain_json_attachment_and_body(self) -> None:
        """Plain JSON works as an application/tlsrpt+json part and as a bare body."""
        data = json.dumps(_REPORT).encode()
        self.assertEqual(
            read_report(_mail(data, "application/tlsrpt+json", "r.json")).report_id, "bm-1"
        )
        bare = b"Content-Type: application/json\r\n\r\n" + data + b"\r\n"
        self.assertEqual(read_report(bare).failures, 3)

    def test_gzip_bomb_is_refused(self) -> None:
        """A report that inflates beyond the limit is refused without inflating it all."""
        bomb = gzip.compress(b" " * (MAX_REPORT + 10))
        with self.assertRaises(ReportError) as caught:
            read_report(_mail(bomb))
        self.assertIn("inflates to more than", str(caught.exception))

    def test_garbage_is_a_report_error(self) -> None:
        """Broken gzip, non-JSON, missing fields and negative counts are ReportErrors."""
        bad = dict(
            _REPORT,
            policies=[
                {
                    "policy": {"policy-domain": "x"},
                    "summary": {
                        "total-successful-session-count": -1,
                        "total-failure-session-count": 0,
                    },
                }
            ],
        )
        for raw in (
            _mail(b"\x1f\x8bnot gzip"),
            _mail(b"{nope", "application/tlsrpt+json"),
            _mail(_gzip_report({"policies": []})),
            _mail(_gzip_report(bad)),
            b"Subject: nothing\r\n\r\nhello\r\n",
        ):
            with self.assertRaises(ReportError):
                read_report(raw)


def _now(function: Any) -> Deferred[Any]:
    return maybeDeferred(function)


class MailboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.mailbox = ReportMailbox("tlsrpt@Rail.Test", _now)

    def _metrics(self) -> str:
        return generate_latest(self.mailbox.registry).decode()

    def test_address_match(self) -> None:
        """The mailbox is its address: local part exact, domain in any case."""
        self.assertTrue(self.mailbox.accepts("tlsrpt@rail.TEST"))
        self.assertFalse(self.mailbox.accepts("TLSRPT@rail.test"))
        self.assertFalse(self.mailbox.accepts("other@rail.test"))

    def test_report_address_only_in_own_domains(self) -> None:
        """Only a mailto: rua in one of Rail's domains is received by Rail."""
        self.assertEqual(report_address("mailto:tls@rail.test", {"rail.test"}), "tls@rail.test")
        self.assertIsNone(report_address("mailto:tls@elsewhere.example", {"rail.test"}))
        self.assertIsNone(report_address("https://rail.test/tlsrpt", {"rail.test"}))
        self.assertIsNone(report_address(None, {"rail.test"}))

    def test_failures_become_metrics_and_one_log_line(self) -> None:
        """A report with failures counts them per sender and RFC 8460 result type (an
        unknown type as ``other``) and logs one warning naming sender and domains."""
        with capturedLogs() as events:
            report = self.successResultOf(self.mailbox.receive(_mail(_gzip_report()), "192.0.2.9"))
        assert report is not None
        metrics = self._metrics()
        self.assertIn('rail_tlsrpt_received_reports_total{sender_org="Big Mail"} 1.0', metrics)
        self.assertIn(
            'rail_tlsrpt_received_failures_total{result_type="certificate-expired",'
            'sender_org="Big Mail"} 2.0',
            metrics,
        )
        self.assertIn('result_type="other",sender_org="Big Mail"} 1.0', metrics)
        (line,) = [e for e in events if "TLS-RPT report" in e.get("log_format", "")]
        self.assertEqual(
            (line["org"], line["failures"], line["domains"]), ("Big Mail", 3, "rail.test")
        )

    def test_unreadable_report_is_logged_not_raised(self) -> None:
        """An unreadable report fires None and logs why."""
        with capturedLogs() as events:
            self.assertIsNone(
                self.successResultOf(self.mailbox.receive(b"Subject: x\r\n\r\nhi\r\n", "192.0.2.9"))
            )
        self.assertTrue(any("unreadable TLS-RPT report" in e.get("log_format", "") for e in events))

    def test_sender_names_are_bounded(self) -> None:
        """After MAX_ORGS distinct sender names, further ones count as ``other``."""
        for n in range(MAX_ORGS + 5):
            report = dict(_REPORT, **{"organization-name": f"org {n}"})
            self.successResultOf(self.mailbox.receive(_mail(_gzip_report(report)), "192.0.2.9"))
        metrics = self._metrics()
        self.assertIn('rail_tlsrpt_received_reports_total{sender_org="other"} 5.0', metrics)


class SessionTests(SynchronousTestCase):
    """Port 25 hands report mail to the mailbox: no spool, no webhook, no SPF/DMARC."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.verifier = FakeVerifier()
        self.received: list[bytes] = []
        session = InboundSession(
            store=self.store,
            verifier=self.verifier,
            recipients=lambda: TABLE,
            settings=Inbound(),
            clock=self.clock,
            hostname="mx.rail.test",
            reports=self,
        )
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        self.protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        self.protocol.makeConnection(self.transport)

    def accepts(self, address: str) -> bool:
        return address == "tlsrpt@rail.test"

    def receive(self, data: bytes, peer: str) -> Deferred[None]:
        self.received.append(data)
        return maybeDeferred(lambda: None)

    def _send(self, rcpts: tuple[bytes, ...]) -> list[bytes]:
        self.transport.clear()
        commands = b"EHLO mail.sender.example\r\nMAIL FROM:<a@sender.example>\r\n"
        commands += b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        body = _mail(_gzip_report())
        self.protocol.dataReceived(commands + b"DATA\r\n" + body + b".\r\n")
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def test_report_only_is_read_not_stored(self) -> None:
        """Mail only for the report address is given to the mailbox and answered 250;
        nothing is spooled for a webhook and no sender check runs."""
        replies = self._send((b"tlsrpt@rail.test",))
        self.assertEqual(replies[-1], b"250 2.0.0 Ok: report received")
        self.assertEqual(len(self.received), 1)
        self.assertIn(b"application/tlsrpt+gzip", self.received[0])
        self.assertEqual((self.store.inbound, self.verifier.calls), ({}, []))

    def test_report_and_a_routed_recipient(self) -> None:
        """With another, routed recipient too, the mailbox reads the report and the
        message is spooled for the other recipient only."""
        replies = self._send((b"tlsrpt@rail.test", b"hello@rail.test"))
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "), replies)
        self.assertEqual(len(self.received), 1)
        [message] = self.store.inbound.values()
        self.assertEqual([t.recipients for t in message.targets], [("hello@rail.test",)])
