"""Tests for :mod:`rail.tlsrpt.sink` (counting outcomes) and :mod:`rail.tlsrpt.sender`
(the daily reports), with a Clock and an in-memory store."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.tlsreport import TLSOutcome
from rail.store import tlsreports
from rail.store.model import NewMessage
from rail.tlsrpt.report import ReportMeta, day_bounds
from rail.tlsrpt.sender import REPORT_CLIENT, Reporter, TemporaryLookupError
from rail.tlsrpt.sink import CountingSink
from tests.tlsrpt.schema import validate_report

_DAY = "2026-12-03"
_NOON = day_bounds(_DAY)[0] + 12 * 3600
_META = ReportMeta(organization="Rail Test", contact="mailto:pm@rail.test", submitter="rail.test")


class _Store:
    """The counters in an in-memory SQLite database, answering synchronously (or
    failing, when ``broken``)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.executescript(tlsreports.TLS_REPORTS_SCHEMA)
        self.broken = False
        self.writes = 0

    def add_tls_counts(self, counts: Any) -> Deferred[None]:
        if self.broken:
            return fail(OSError("disk full"))
        self.writes += 1
        tlsreports.add_counts(self.db, counts)
        return succeed(None)

    def tls_unreported_days(self, before: str) -> Deferred[list[str]]:
        return succeed(tlsreports.unreported_days(self.db, before))

    def tls_day(self, day: str) -> Deferred[list[Any]]:
        return succeed(tlsreports.read_day(self.db, day))

    def tls_reported(self, day: str, domains: Sequence[str]) -> Deferred[int]:
        return succeed(tlsreports.delete_rows(self.db, day, domains))

    def tls_drop_before(self, day: str) -> Deferred[int]:
        return succeed(tlsreports.drop_before(self.db, day))


def _outcome(result: str = "success", domain: str = "dest.test", **kw: Any) -> TLSOutcome:
    return TLSOutcome(
        policy_domain=domain,
        policy_type=kw.pop("policy_type", "tlsa"),
        policy_strings=kw.pop("policy_strings", ("3 1 1 ab",)),
        mx_host=kw.pop("mx_host", "MX.dest.test."),
        receiving_ip=kw.pop("receiving_ip", "192.0.2.1"),
        result=result,
        **kw,
    )


class SinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_NOON)
        self.store = _Store()
        self.sink = CountingSink(self.store, self.clock, interval=60, max_keys=100)
        self.sink.start()

    def test_counts_are_written_each_interval_and_bounded_by_key(self) -> None:
        """Many sessions make few rows: successes without host, failures per host and
        address with their last reason; nothing is written before the interval."""
        for _ in range(50):
            self.sink.record(_outcome())
        for reason in ("one", "two"):
            self.sink.record(_outcome("validation-failure", failure_reason=reason))
        self.assertEqual(self.store.writes, 0)
        self.clock.advance(60)
        rows = sorted(tlsreports.read_day(self.store.db, _DAY))
        self.assertEqual(
            rows,
            [
                (_DAY, "dest.test", "tlsa", ("3 1 1 ab",), "success", "", "", 50, None),
                (
                    _DAY,
                    "dest.test",
                    "tlsa",
                    ("3 1 1 ab",),
                    "validation-failure",
                    "mx.dest.test",
                    "192.0.2.1",
                    2,
                    "two",
                ),
            ],
        )
        self.assertEqual(self.store.writes, 1)

    def test_too_many_keys_flush_early(self) -> None:
        """At ``max_keys`` distinct counters the sink writes at once."""
        for n in range(100):
            self.sink.record(_outcome(domain=f"d{n}.test"))
        self.assertEqual((self.store.writes, self.sink.pending), (1, 0))

    def test_failed_write_keeps_the_counts(self) -> None:
        """A write that fails puts the counts back; the next one writes them all."""
        self.store.broken = True
        self.sink.record(_outcome())
        self.clock.advance(60)
        self.assertEqual(self.sink.pending, 1)
        self.store.broken = False
        self.sink.record(_outcome())
        self.clock.advance(60)
        ((*_, count, _reason),) = tlsreports.read_day(self.store.db, _DAY)
        self.assertEqual(count, 2)

    def test_stop_writes_what_is_left_and_stops_the_timer(self) -> None:
        """Stopping writes the pending counters and leaves nothing scheduled."""
        self.sink.record(_outcome())
        self.successResultOf(self.sink.stop())
        self.assertEqual(self.store.writes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_day_is_the_utc_day_of_the_session(self) -> None:
        """Outcomes after midnight UTC count for the new day."""
        self.clock.advance(12 * 3600)
        self.sink.record(_outcome())
        self.successResultOf(self.sink.flush())
        self.assertEqual(tlsreports.unreported_days(self.store.db, "2026-12-31"), ["2026-12-04"])


class ReporterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_NOON)
        self.store = _Store()
        self.rua: dict[str, Any] = {}
        self.queued: list[NewMessage] = []
        self.posted: list[tuple[str, bytes]] = []
        self.post_status = 200
        self.reporter = Reporter(
            self.store,
            self.clock,
            _META,
            sender="tlsrpt@rail.test",
            lookup_rua=self._lookup,
            queue=self._queue,
            post=self._post,
        )
        sink = CountingSink(self.store, self.clock)
        for _ in range(3):
            sink.record(_outcome())
        sink.record(_outcome("validation-failure", failure_reason="DANE: no match"))
        sink.record(_outcome(domain="quiet.test", policy_type="no-policy-found", policy_strings=()))
        self.successResultOf(sink.flush())

    def _lookup(self, domain: str) -> Deferred[tuple[str, ...]]:
        answer = self.rua.get(domain, ())
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)

    def _queue(self, message: NewMessage) -> Deferred[Any]:
        self.queued.append(message)
        return succeed(None)

    def _post(self, url: str, body: bytes) -> Deferred[int]:
        self.posted.append((url, body))
        return succeed(self.post_status)

    def test_nothing_is_reported_for_today(self) -> None:
        """The current day is still counting: no report, no rows deleted."""
        self.assertEqual(self.successResultOf(self.reporter.run()), [])
        self.assertEqual(len(tlsreports.read_day(self.store.db, _DAY)), 3)

    def test_yesterday_goes_to_mailto_and_https(self) -> None:
        """After midnight the day's report goes to each rua: a queued message from the
        null reverse-path with the gzip report attached, and a POST of the same bytes;
        the report validates and carries the failure counts; the rows are gone, also
        those of a domain that asks for no reports."""
        self.rua["dest.test"] = ("mailto:tls@dest.test", "https://reports.dest.test/tlsrpt")
        self.clock.advance(12 * 3600 + 60)
        (sent,) = self.successResultOf(self.reporter.run())
        self.assertEqual((sent.day, sent.policy_domain, sent.failures), (_DAY, "dest.test", 1))
        (message,) = self.queued
        self.assertEqual(
            (message.sender, message.recipients, message.client),
            ("", ("tls@dest.test",), REPORT_CLIENT),
        )
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        attachment = next(parsed.iter_attachments())  # type: ignore[attr-defined]
        ((url, body),) = self.posted
        self.assertEqual(url, "https://reports.dest.test/tlsrpt")
        self.assertEqual(attachment.get_content(), body)
        report = validate_report(body)
        (policy,) = report["policies"]
        self.assertEqual(
            policy["summary"],
            {"total-successful-session-count": 3, "total-failure-session-count": 1},
        )
        self.assertEqual(policy["failure-details"][0]["failure-reason-code"], "DANE: no match")
        self.assertEqual(report["report-id"], sent.report_id)
        self.assertEqual(tlsreports.unreported_days(self.store.db, "2026-12-31"), [])

    def test_dns_failure_keeps_the_rows_for_the_next_run(self) -> None:
        """A temporary look-up failure sends nothing for that domain and keeps its rows;
        the hourly run then sends it."""
        self.rua["dest.test"] = TemporaryLookupError("SERVFAIL")
        self.clock.advance(12 * 3600 + 60)
        self.reporter.start()
        self.assertEqual(self.queued, [])
        self.assertEqual(
            {row[1] for row in tlsreports.read_day(self.store.db, _DAY)}, {"dest.test"}
        )
        self.rua["dest.test"] = ("mailto:tls@dest.test",)
        self.clock.advance(3600)
        self.assertEqual(len(self.queued), 1)
        self.successResultOf(self.reporter.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failed_post_is_logged_and_not_retried(self) -> None:
        """An https rua answering 500 gets no retry; the rows go anyway."""
        self.rua["dest.test"] = ("https://reports.dest.test/tlsrpt",)
        self.post_status = 500
        self.clock.advance(12 * 3600 + 60)
        (sent,) = self.successResultOf(self.reporter.run())
        self.assertEqual(sent.destinations, ())
        self.assertEqual(tlsreports.unreported_days(self.store.db, "2026-12-31"), [])

    def test_old_rows_are_dropped(self) -> None:
        """Rows older than ``keep_days`` go even if never reported."""
        self.rua["dest.test"] = TemporaryLookupError("SERVFAIL")
        self.clock.advance(4 * 86400)
        self.successResultOf(self.reporter.run())
        self.assertEqual(tlsreports.unreported_days(self.store.db, "2026-12-31"), [])
