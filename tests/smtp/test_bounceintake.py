"""Port 25 for bounce domains: only signed return paths, reports recorded, not spooled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from rail.bounces.reports import DeliveryReport, FeedbackReport
from rail.bounces.verp import ReturnPaths
from rail.refusals import Refusals
from rail.smtp.bounceintake import BounceIntake
from rail.smtp.inbound import InboundSession
from rail.smtp.server import RailESMTP
from rail.store.bouncereports import Noted
from rail.store.ids import new_message_id
from rail.store.model import StoreUnavailableError
from tests.smtp.helpers import LIMITS
from tests.smtp.test_inbound import InboundTestCase

_FIXTURES = Path(__file__).parent.parent / "bounces" / "fixtures"
_MESSAGE = new_message_id(1_790_000_000.0)
PATHS = ReturnPaths(b"k" * 32)


class FakeReports:
    """Records what the intake asks the store to record; answers ``answer``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, DeliveryReport | FeedbackReport, float]] = []
        self.answer: Any = None

    def record_report(
        self, message_id: str, report: DeliveryReport | FeedbackReport, now: float
    ) -> Any:
        self.calls.append((message_id, report, now))
        if isinstance(self.answer, Exception):
            return defer.fail(self.answer)
        return defer.succeed(self.answer or [Noted("gone@dest.test", "recorded", "app", True)])


def report(name: str, rcpt: str) -> bytes:
    """A fixture addressed to ``rcpt``, dot-stuffed for DATA."""
    data = (_FIXTURES / name).read_bytes().replace(b"\n", b"\r\n")
    data = data.replace(
        b"b-01JEXAMPLE0000000000000000-0123456789abcdef@bounces.rail.test", rcpt.encode()
    )
    return b"\r\n".join(
        b"." + line if line.startswith(b".") else line for line in data.split(b"\r\n")
    )


class BounceIntakeTests(InboundTestCase):
    # The thread the report is parsed in: at once, unless a test holds it.
    held: list[tuple[Callable[[], Any], defer.Deferred[Any]]] | None = None

    def in_thread(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        if self.held is None:
            return defer.maybeDeferred(work)
        waiting: defer.Deferred[Any] = defer.Deferred()
        self.held.append((work, waiting))
        return waiting

    def connect(self, settings: Any = None) -> None:
        self.reports = FakeReports()
        self.refusals = Refusals(self.clock)
        self.session = InboundSession(
            store=self.store,
            verifier=self.verifier,
            recipients=lambda: self.table,
            settings=settings or self.settings,
            clock=self.clock,
            hostname="mx.rail.test",
            refusals=self.refusals,
            bounces=BounceIntake(
                store=self.reports,
                paths=PATHS,
                max_size=5000,
                clock=self.clock,
                in_thread=self.in_thread,
                refusals=self.refusals,
            ),
        )
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", self.peer, 40000))
        self.protocol = RailESMTP(
            self.session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock
        )
        self.protocol.makeConnection(self.transport)
        self.transport.clear()

    def verp(self, message_id: str = _MESSAGE, domain: str = "rail.test") -> str:
        return PATHS.address(message_id, f"app@{domain}")

    def deliver(self, rcpts: list[str], data: bytes) -> list[bytes]:
        self.ehlo()
        commands = b"MAIL FROM:<>\r\n" + b"".join(
            b"RCPT TO:<" + r.encode() + b">\r\n" for r in rcpts
        )
        return self.send(commands + b"DATA\r\n" + data + b"\r\n.\r\n")

    def test_dsn_is_recorded_not_spooled(self) -> None:
        """A DSN to a verified return path is parsed and recorded for the message the
        address names; 250 after the store answered; nothing is spooled for an app and
        the authentication checks are not run."""
        rcpt = self.verp()
        with capturedLogs() as events:
            replies = self.deliver([rcpt], report("postfix-dsn.eml", rcpt))
        self.assertEqual(replies[-1], b"250 2.0.0 Ok: report recorded")
        [(message_id, parsed, now)] = self.reports.calls
        self.assertEqual((message_id, now), (_MESSAGE, self.clock.seconds()))
        assert isinstance(parsed, DeliveryReport)
        self.assertEqual(parsed.recipients[0].final_recipient, "gone@dest.test")
        self.assertEqual(self.store.inbound, {})
        self.assertEqual(self.verifier.calls, [])
        [line] = [e for e in events if e.get("kind") == "dsn"]
        self.assertEqual(
            (line["msg_id"], line["outcome"], line["client"]), (_MESSAGE, "recorded", "app")
        )

    def test_arf_is_recorded(self) -> None:
        """An ARF complaint to a return path is recorded as a feedback report."""
        rcpt = self.verp()
        replies = self.deliver([rcpt], report("arf-abuse.eml", rcpt))
        self.assertEqual(replies[-1], b"250 2.0.0 Ok: report recorded")
        self.assertIsInstance(self.reports.calls[0][1], FeedbackReport)

    def test_report_is_parsed_off_the_reactor(self) -> None:
        """The report is parsed through ``in_thread``: until that work has run, nothing
        is recorded and no reply is sent; then the 250 follows. A report that is no
        report, parsed the same way, still reaches the postmaster route afterwards."""
        self.held = []
        rcpt = self.verp()
        replies = self.deliver([rcpt], report("postfix-dsn.eml", rcpt))
        self.assertFalse(any(r.startswith(b"250 2.0.0 Ok: report") for r in replies))
        self.assertEqual(self.reports.calls, [])
        [(work, waiting)] = self.held
        waiting.callback(work())
        self.assertEqual(self.transport.value().splitlines()[-1], b"250 2.0.0 Ok: report recorded")
        self.assertEqual(len(self.reports.calls), 1)
        self.held.clear()
        self.transport.clear()
        self.send(
            b"MAIL FROM:<>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n"
            b"Subject: I am on holiday\r\n\r\nback Monday\r\n.\r\n"
        )
        [(work, waiting)] = self.held
        waiting.callback(work())
        last = self.transport.value().splitlines()[-1]
        self.assertTrue(last.startswith(b"250 2.0.0 Ok: queued as "), last)
        [message] = self.store.inbound.values()
        self.assertEqual([t.client for t in message.targets], ["billing"])

    def test_forged_return_paths_refused_at_rcpt(self) -> None:
        """A bounce-domain address whose tag does not verify (bad tag, another secret,
        no tag at all, a domain Rail does not serve) is refused 550 5.1.1 and counted;
        nothing reaches the store."""
        good = self.verp()
        local, _, domain = good.partition("@")
        forged = [
            f"{local[:-1]}{'0' if local[-1] != '0' else '1'}@{domain}",
            ReturnPaths(b"x" * 32).address(_MESSAGE, "app@rail.test"),
            f"bob@{domain}",
            f"b-{_MESSAGE}-0000000000000000@{domain}",
        ]
        self.ehlo()
        self.send(b"MAIL FROM:<>\r\n")
        for address in forged:
            [reply] = self.send(b"RCPT TO:<" + address.encode() + b">\r\n")
            self.assertEqual(reply, b"550 5.1.1 User unknown", address)
        self.assertEqual(self.refusals.counts[("inbound", "forged_return_path")], 4)
        self.connect()
        self.ehlo()
        self.send(b"MAIL FROM:<>\r\n")
        [reply] = self.send(b"RCPT TO:<" + self.verp(domain="elsewhere.test").encode() + b">\r\n")
        self.assertTrue(reply.startswith(b"550 5.7.1"), reply)
        self.assertEqual(self.refusals.counts.get(("inbound", "forged_return_path")), None)
        self.assertEqual(self.reports.calls, [])

    def test_no_mixing_with_ordinary_recipients(self) -> None:
        """Return paths and ordinary recipients are not taken in one transaction: the
        second kind gets 452 4.5.3 (the client sends them in another one)."""
        self.ehlo()
        self.send(b"MAIL FROM:<>\r\n")
        self.assertEqual(
            self.send(b"RCPT TO:<" + self.verp().encode() + b">\r\n"), [b"250 2.1.5 Recipient ok"]
        )
        [reply] = self.send(b"RCPT TO:<hello@rail.test>\r\n")
        self.assertTrue(reply.startswith(b"452 4.5.3"), reply)
        self.send(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<hello@rail.test>\r\n")
        [reply] = self.send(b"RCPT TO:<" + self.verp().encode() + b">\r\n")
        self.assertTrue(reply.startswith(b"452 4.5.3"), reply)

    def test_oversized_report_refused(self) -> None:
        """A message over bounces.max_report_size is refused 552 5.3.4, nothing recorded."""
        rcpt = self.verp()
        big = report("postfix-dsn.eml", rcpt) + (b"\r\n" + b"x" * 900) * 4
        replies = self.deliver([rcpt], big)
        self.assertTrue(replies[-1].startswith(b"552 5.3.4"), replies[-1])
        self.assertEqual(self.reports.calls, [])
        self.assertEqual(self.refusals.counts[("inbound", "report_too_big")], 1)

    def test_unreadable_goes_to_postmaster(self) -> None:
        """Mail to a return path that is no report (an auto-reply) goes to the postmaster
        route as ordinary inbound mail; nothing is recorded as a report."""
        replies = self.deliver([self.verp()], b"Subject: I am on holiday\r\n\r\nback Monday")
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "), replies[-1])
        [message] = self.store.inbound.values()
        self.assertEqual([t.client for t in message.targets], ["billing"])
        self.assertEqual(self.reports.calls, [])

    def test_unreadable_without_postmaster_refused(self) -> None:
        """Without a postmaster route, such mail is refused 550 5.6.0."""
        import attrs

        self.table = attrs.evolve(self.table, postmaster=None)
        replies = self.deliver([self.verp()], b"Subject: hi\r\n\r\nhi")
        self.assertTrue(replies[-1].startswith(b"550 5.6.0"), replies[-1])
        self.assertEqual(self.store.inbound, {})

    def test_store_failure_is_temporary(self) -> None:
        """A store that cannot record answers 451 4.3.0: the reporter tries again."""
        self.reports.answer = StoreUnavailableError("disk")
        rcpt = self.verp()
        replies = self.deliver([rcpt], report("postfix-dsn.eml", rcpt))
        self.assertEqual(
            replies[-1], b"451 4.3.0 Requested action aborted: local error in processing"
        )

    def test_ordinary_mail_unchanged(self) -> None:
        """Mail for ordinary recipients is spooled as before."""
        replies = self.submit()
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(len(self.store.inbound), 1)

    def test_postmaster_of_a_bounce_domain_accepted(self) -> None:
        """RFC 5321 §4.5.1: postmaster@ the bounce domain of a local domain (any case) is
        accepted as ordinary mail and routed like the parent domain's postmaster (the
        envelope recipient kept); a bounce-shaped domain of no local domain stays a
        relay; it does not join a transaction of return paths."""
        replies = self.deliver(
            ["postmaster@bounces.rail.test", "PostMaster@Bounces.Other.Test"],
            b"Subject: abuse desk\r\n\r\nhello",
        )
        self.assertEqual(replies[1:3], [b"250 2.1.5 Recipient ok"] * 2)
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "), replies[-1])
        [message] = self.store.inbound.values()
        self.assertEqual(
            [(t.client, t.recipients) for t in message.targets],
            [("billing", ("postmaster@bounces.rail.test", "PostMaster@Bounces.Other.Test"))],
        )
        self.assertEqual(self.reports.calls, [])
        self.connect()
        self.ehlo()
        self.send(b"MAIL FROM:<>\r\n")
        [reply] = self.send(b"RCPT TO:<postmaster@bounces.elsewhere.test>\r\n")
        self.assertTrue(reply.startswith(b"550 5.7.1"), reply)
        self.send(b"RCPT TO:<" + self.verp().encode() + b">\r\n")
        [reply] = self.send(b"RCPT TO:<postmaster@bounces.rail.test>\r\n")
        self.assertTrue(reply.startswith(b"452 4.5.3"), reply)

    def test_postmaster_of_a_bounce_domain_by_address(self) -> None:
        """Without a global postmaster, the parent domain's own postmaster address
        decides where postmaster@ its bounce domain goes."""
        import attrs

        self.table = attrs.evolve(
            self.table,
            postmaster=None,
            addresses={**self.table.addresses, ("postmaster", "rail.test"): "app"},
        )
        replies = self.deliver(["postmaster@bounces.rail.test"], b"Subject: hi\r\n\r\nhi")
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "), replies[-1])
        [message] = self.store.inbound.values()
        self.assertEqual([t.client for t in message.targets], ["app"])
