"""Tests for the pure TLS-RPT modules: the report, its message, the rua record."""

from __future__ import annotations

import email
import email.policy
import gzip
import json

import jsonschema
from twisted.trial.unittest import SynchronousTestCase

from rail.tlsrpt.mail import report_message
from rail.tlsrpt.record import mailto_address, parse_tlsrpt_records
from rail.tlsrpt.report import (
    OutcomeRow,
    ReportMeta,
    build_report,
    compress,
    day_bounds,
    day_of,
    report_filename,
)
from tests.tlsrpt.schema import validate_report

_META = ReportMeta(
    organization="Rail Test", contact="mailto:postmaster@rail.test", submitter="rail.test"
)
_STS = ("version: STSv1", "mode: enforce", "mx: mx1.dest.test", "mx: *.dest.test", "max_age: 86400")
_DAY = "2026-12-03"


def _row(
    result: str,
    count: int,
    *,
    kind: str = "sts",
    mx: str = "",
    ip: str = "",
    reason: str | None = None,
) -> OutcomeRow:
    strings = _STS if kind == "sts" else ("3 1 1 ab",) if kind == "tlsa" else ()
    return OutcomeRow(_DAY, "dest.test", kind, strings, result, mx, ip, count, reason)


class ReportTests(SynchronousTestCase):
    def test_report_totals_and_details_validate_with_the_rfc_schema(self) -> None:
        """Successes and failures of two policies make two policy entries with their
        totals and one failure detail per result, host and address; the gzip report
        validates with the independent RFC 8460 schema."""
        rows = [
            _row("success", 5),
            _row("certificate-expired", 2, mx="mx1.dest.test", ip="192.0.2.1", reason="expired"),
            _row("certificate-expired", 1, mx="mx2.dest.test", ip="192.0.2.2"),
            _row("success", 3, kind="tlsa"),
            _row("validation-failure", 4, kind="tlsa", mx="mx1.dest.test", ip="192.0.2.1"),
        ]
        report = build_report(rows, _META, "r1@rail.test")
        assert report is not None
        parsed = validate_report(compress(report))
        self.assertEqual(parsed, report)
        self.assertEqual(
            report["date-range"],
            {"start-datetime": "2026-12-03T00:00:00Z", "end-datetime": "2026-12-03T23:59:59Z"},
        )
        sts, tlsa = sorted(report["policies"], key=lambda p: p["policy"]["policy-type"])
        self.assertEqual(sts["policy"]["mx-host"], ["mx1.dest.test", "*.dest.test"])
        self.assertEqual(sts["policy"]["policy-string"], list(_STS))
        self.assertEqual(
            sts["summary"],
            {"total-successful-session-count": 5, "total-failure-session-count": 3},
        )
        self.assertEqual(
            sts["failure-details"],
            [
                {
                    "result-type": "certificate-expired",
                    "failed-session-count": 2,
                    "receiving-mx-hostname": "mx1.dest.test",
                    "receiving-ip": "192.0.2.1",
                    "failure-reason-code": "expired",
                },
                {
                    "result-type": "certificate-expired",
                    "failed-session-count": 1,
                    "receiving-mx-hostname": "mx2.dest.test",
                    "receiving-ip": "192.0.2.2",
                },
            ],
        )
        self.assertEqual(tlsa["summary"]["total-failure-session-count"], 4)
        self.assertNotIn("mx-host", tlsa["policy"])

    def test_no_policy_found_has_no_policy_string(self) -> None:
        """Opportunistic sessions are reported as ``no-policy-found`` without text."""
        report = build_report([_row("success", 1, kind="no-policy-found")], _META, "r2")
        assert report is not None
        validate_report(json.dumps(report).encode())
        self.assertNotIn("policy-string", report["policies"][0]["policy"])

    def test_schema_refuses_what_the_rfc_forbids(self) -> None:
        """The schema is a real check: an unknown result type or a missing summary fails."""
        report = build_report([_row("certificate-expired", 1, mx="mx1.dest.test")], _META, "r3")
        assert report is not None
        report["policies"][0]["failure-details"][0]["result-type"] = "bad-luck"
        with self.assertRaises(jsonschema.ValidationError):
            validate_report(json.dumps(report).encode())
        del report["policies"][0]["summary"]
        with self.assertRaises(jsonschema.ValidationError):
            validate_report(json.dumps(report).encode())

    def test_no_rows_no_report(self) -> None:
        """Nothing counted, nothing to report."""
        self.assertIsNone(build_report([], _META, "r4"))

    def test_compression_is_deterministic(self) -> None:
        """The same report compresses to the same bytes (no time in the gzip header)."""
        report = build_report([_row("success", 1)], _META, "r5")
        assert report is not None
        self.assertEqual(compress(report), compress(report))
        self.assertEqual(json.loads(gzip.decompress(compress(report))), report)

    def test_days_and_file_name(self) -> None:
        """UTC days and their bounds; the file name of RFC 8460 §5.1."""
        first, last = day_bounds(_DAY)
        self.assertEqual(
            (day_of(first), day_of(last), day_of(last + 1)), (_DAY, _DAY, "2026-12-04")
        )
        self.assertEqual(
            report_filename(_META, "dest.test", _DAY, "01X"),
            f"rail.test!dest.test!{first}!{last}!01X.json.gz",
        )


class MessageTests(SynchronousTestCase):
    def test_report_message_fields_and_attachment(self) -> None:
        """The message is multipart/report (report-type tlsrpt) with the RFC 8460 §5.3
        header fields and subject, and the gzip report attached as
        application/tlsrpt+gzip under its file name; lines end in CRLF."""
        report = build_report([_row("success", 1)], _META, "r6@rail.test")
        assert report is not None
        compressed = compress(report)
        data = report_message(
            sender="tlsrpt@rail.test",
            recipient="tls@dest.test",
            policy_domain="dest.test",
            submitter="rail.test",
            report_id="r6@rail.test",
            filename="rail.test!dest.test!1!2!x.json.gz",
            compressed=compressed,
            message_id="01MSG",
            now=1_790_000_000,
        )
        self.assertNotIn(b"\n", data.replace(b"\r\n", b""))
        message = email.message_from_bytes(data, policy=email.policy.default)
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "tlsrpt")
        self.assertEqual(message["TLS-Report-Domain"], "dest.test")
        self.assertEqual(message["TLS-Report-Submitter"], "rail.test")
        self.assertEqual(
            message["Subject"],
            "Report Domain: dest.test Submitter: rail.test Report-ID: <r6@rail.test>",
        )
        attachment = next(p for p in message.iter_attachments())  # type: ignore[attr-defined]
        self.assertEqual(attachment.get_content_type(), "application/tlsrpt+gzip")
        self.assertEqual(attachment.get_filename(), "rail.test!dest.test!1!2!x.json.gz")
        self.assertEqual(attachment.get_content(), compressed)


class RecordTests(SynchronousTestCase):
    def test_rua_uris(self) -> None:
        """``rua`` lists mailto and https URIs; other schemes and fields are ignored."""
        self.assertEqual(
            parse_tlsrpt_records(
                ["v=TLSRPTv1; rua=mailto:tls@dest.test, https://r.dest.test/tls,ftp://x; ext=1"]
            ),
            ("mailto:tls@dest.test", "https://r.dest.test/tls"),
        )

    def test_exactly_one_record_counts(self) -> None:
        """Other TXT records are ignored; two TLSRPT records mean no reports; so does none."""
        record = "v=TLSRPTv1;rua=mailto:a@dest.test"
        self.assertEqual(parse_tlsrpt_records(["v=spf1 -all", record]), ("mailto:a@dest.test",))
        self.assertEqual(parse_tlsrpt_records([record, record]), ())
        self.assertEqual(parse_tlsrpt_records(["v=TLSRPTv2; rua=mailto:a@dest.test"]), ())
        self.assertEqual(parse_tlsrpt_records([]), ())

    def test_mailto_address(self) -> None:
        """A mailto URI's address, percent-decoded, without a query; None if there is none."""
        self.assertEqual(
            mailto_address("mailto:tls%2Brpt@dest.test?subject=x"), "tls+rpt@dest.test"
        )
        self.assertIsNone(mailto_address("mailto:nobody"))
        self.assertIsNone(mailto_address("https://x"))
