"""Port 25 at the byte level: every framing violation closes the session and stores
nothing (SMTP smuggling, bare CR/LF, NUL, over-long lines)."""

from __future__ import annotations

from tests.smtp.test_inbound import InboundTestCase

SMUGGLED = (
    b"MAIL FROM:<smuggled@evil.example>\r\n"
    b"RCPT TO:<hello@rail.test>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n\r\nsmuggled\r\n"
    b".\r\n"
)

# Message data after DATA's 354, each ending (or pretending to end) the message in a way
# that is not <CRLF>.<CRLF>, followed by a smuggled transaction and a real end.
VIOLATIONS = {
    "LF.LF": b"Subject: x\r\n\r\nline1\n.\n" + SMUGGLED,
    "LF.CRLF": b"Subject: x\r\n\r\nline1\n.\r\n" + SMUGGLED,
    "CR.CRLF": b"Subject: x\r\n\r\nline1\r.\r\n" + SMUGGLED,
    "CRLF.LF": b"Subject: x\r\n\r\nline1\r\n.\n" + SMUGGLED,
    "CRLF.CR": b"Subject: x\r\n\r\nline1\r\n.\r" + SMUGGLED,
    "CRLF NUL.CRLF": b"Subject: x\r\n\r\nline1\r\n\x00.\r\n" + SMUGGLED,
    "bare CR": b"Subject: x\r\n\r\nbare\rcr\r\n.\r\n",
    "bare LF": b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n",
    "NUL": b"Subject: x\r\n\r\nnul\x00byte\r\n.\r\n",
    "bare CR in header": b"Subject: x\rBcc: y\r\n\r\nbody\r\n.\r\n",
    "over-long line": b"Subject: x\r\n\r\n" + b"a" * 999 + b"\r\n.\r\n",
    "over-long unterminated": b"Subject: x\r\n\r\n" + b"a" * 5000,
}


class ByteLevelTests(InboundTestCase):
    def start_data(self) -> None:
        self.ehlo()
        replies = self.send(
            b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<hello@rail.test>\r\nDATA\r\n"
        )
        self.assertEqual(replies[-1][:3], b"354")

    def assert_closed_nothing_stored(self, replies: list[bytes]) -> None:
        self.assertTrue(replies, "no reply before closing")
        # 5.5.2 for framing faults, 5.6.0 for an over-long line of message text.
        self.assertRegex(replies[-1], rb"^500 5\.(5\.2|6\.0) ")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.store.inbound, {})
        self.assertEqual(self.verifier.calls, [])

    def test_violations_in_one_packet(self) -> None:
        """Each violation, sent at once with what follows, closes the session with 500
        and stores nothing (neither the message nor the smuggled one)."""
        for name, data in VIOLATIONS.items():
            with self.subTest(case=name):
                self.connect()
                self.start_data()
                replies = self.send(data)
                self.assert_closed_nothing_stored(replies)
                self.assertEqual(len(replies), 1, replies)

    def test_violations_byte_by_byte(self) -> None:
        """The same, one byte per read: framing state survives packet boundaries."""
        for name, data in VIOLATIONS.items():
            with self.subTest(case=name):
                self.connect()
                self.start_data()
                replies: list[bytes] = []
                for index in range(len(data)):
                    replies += self.send(data[index : index + 1])
                self.assert_closed_nothing_stored(replies)
                self.assertEqual(len(replies), 1, replies)

    def test_command_mode_violations(self) -> None:
        """Bare LF, bare CR and NUL between commands close the session before any
        transaction."""
        cases = [
            b"EHLO a.example\nMAIL FROM:<a@sender.example>\r\n",
            b"EHLO a.example\r\nMAIL FROM:<a@sender.example>\rRCPT TO:<hello@rail.test>\r\n",
            b"EHLO a.example\r\nMAIL FROM:<a@sender.example>\x00\r\n",
            b"EHLO a.example\r\nRCPT TO:<hello@rail.test>\n",
        ]
        for data in cases:
            with self.subTest(data=data):
                self.connect()
                replies = self.send(data + b"DATA\r\n" + b"x\r\n.\r\n")
                self.assertRegex(replies[-1], rb"^500 5\.5\.2 ")
                self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.store.inbound, {})

    def test_dot_stuffing_is_not_an_end(self) -> None:
        """A dot-stuffed line (``..``) is data; only <CRLF>.<CRLF> ends the message, and
        exactly one message is stored."""
        self.start_data()
        replies = self.send(b"Subject: x\r\n\r\n..\r\n.. not the end\r\n.\r\n")
        self.assertTrue(replies[-1].startswith(b"250 "))
        [message] = self.store.inbound.values()
        self.assertTrue(message.data.endswith(b"\r\n\r\n.\r\n. not the end\r\n"))
