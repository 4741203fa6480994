"""Rail's own DSN for a forwarded message goes to the original sender, not to the SRS
address (which would only come back to Rail's port 25)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.bounces.verp import ReturnPaths
from rail.delivery.bounces import dsn_builder
from rail.delivery.service import signed_return_path
from rail.forward.bounces import dsn_recipient
from rail.forward.srs import SRS
from rail.store.model import BouncedRecipient, BounceReport, DeliveryJob, DueRecipient

SRS_ = SRS(b"0123456789abcdef0123456789abcdef")
NOW = 1_790_000_000.0


def _report(client: str, sender: str) -> BounceReport:
    return BounceReport(
        message_id="01ID",
        client=client,
        sender=sender,
        received_at=NOW,
        data=b"From: <alice@sender.example>\r\nSubject: hi\r\n\r\nbody\r\n",
        bounced=(
            BouncedRecipient(
                address="bob@mailbox.example",
                reply="550 5.1.1 no such user",
                remote_mta="mx.mailbox.example",
                updated_at=NOW,
            ),
        ),
    )


class DSNRecipientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.recipient = dsn_recipient(SRS_, self.clock.seconds)
        self.srs = SRS_.forward("alice@sender.example", "rail.test", NOW)

    def test_forwarded_unwrapped(self) -> None:
        """A forwarded message's SRS sender is unwrapped, and the DSN built with it goes
        to the original sender, from the null sender, under the forwarding client."""
        report = _report("forward:alias@rail.test", self.srs)
        self.assertEqual(self.recipient(report), "alice@sender.example")
        dsn = dsn_builder("rail.test", self.clock.seconds, recipient=self.recipient)(report)
        assert dsn is not None
        self.assertEqual((dsn.sender, dsn.recipients), ("", ("alice@sender.example",)))
        self.assertEqual(dsn.client, "forward:alias@rail.test")

    def test_other_mail_unchanged(self) -> None:
        """An application's message, a forward whose sender is not an SRS address of the
        forwarding domain, and one that fails verification keep their sender."""
        for client, sender in (
            ("app", self.srs),
            ("forward:alias@rail.test", "plain@sender.example"),
            ("forward:alias@other.test", self.srs),
            ("forward:alias@rail.test", "SRS0=AAAA=" + self.srs.split("=", 2)[2]),
        ):
            self.assertEqual(self.recipient(_report(client, sender)), sender)


class ReturnPathTests(SynchronousTestCase):
    def test_forwarded_mail_keeps_its_srs_sender(self) -> None:
        """With signed return paths on (bounces.enabled), an application's message goes
        out from its VERP address, a forwarded copy from its SRS address (its bounces
        belong to the original sender) and a DSN from the null sender."""
        paths = ReturnPaths(b"0123456789abcdef0123456789abcdef")
        mail_from = signed_return_path(paths)

        def job(client: str, sender: str) -> DeliveryJob:
            return DeliveryJob(
                message_id="01KB0000000000000000000000",
                domain="mailbox.example",
                client=client,
                sender=sender,
                received_at=NOW,
                smtputf8=False,
                eight_bit=False,
                recipients=(DueRecipient(0, "bob@mailbox.example", 0, None),),
                data=b"",
            )

        srs = SRS_.forward("alice@sender.example", "rail.test", NOW)
        self.assertEqual(mail_from(job("forward:alias@rail.test", srs)), srs)
        self.assertEqual(mail_from(job("srs-return:rail.test", "")), "")
        self.assertTrue(mail_from(job("app", "app@rail.test")).startswith("b-01KB"))
