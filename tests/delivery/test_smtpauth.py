"""SMTP AUTH with a relay: mechanism choice, the PLAIN and LOGIN exchanges, refusal to
log in without TLS, and a refused login as a local temporary failure."""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.outcome import SessionError
from rail.delivery.replies import Capabilities, Response
from rail.delivery.smtpauth import Credentials, authenticate, mechanism, plain_response

CREDENTIALS = Credentials("relay@example.com", "pässword")


class _Session:
    """Answers each command with the next scripted reply; records the lines."""

    def __init__(self, auth: str, replies: list[tuple[int, str]], tls: bool = True) -> None:
        self.tls_active = tls
        self.capabilities = Capabilities(esmtp=True, extensions={"AUTH": auth})
        self.replies = replies
        self.lines: list[bytes] = []

    def command(self, line: bytes, what: str) -> Deferred[Response]:
        self.lines.append(line)
        code, text = self.replies.pop(0)
        return succeed(Response(code, (text,)))


def _run(session: Any) -> Deferred[None]:
    return Deferred.fromCoroutine(authenticate(session, CREDENTIALS, "relay.example"))


class MechanismTests(SynchronousTestCase):
    def test_plain_preferred(self) -> None:
        """PLAIN when offered, else LOGIN, else None; the old AUTH= form counts."""
        caps = lambda ext: Capabilities(esmtp=True, extensions=ext)  # noqa: E731
        self.assertEqual(mechanism(caps({"AUTH": "LOGIN PLAIN CRAM-MD5"})), "PLAIN")
        self.assertEqual(mechanism(caps({"AUTH": "login"})), "LOGIN")
        self.assertEqual(mechanism(caps({"AUTH=LOGIN": ""})), "LOGIN")
        self.assertIsNone(mechanism(caps({"AUTH": "CRAM-MD5 XOAUTH2"})))
        self.assertIsNone(mechanism(caps({})))

    def test_plain_response(self) -> None:
        """RFC 4616: NUL, user, NUL, password, UTF-8, base64."""
        decoded = base64.b64decode(plain_response(CREDENTIALS))
        self.assertEqual(decoded, b"\0relay@example.com\0p\xc3\xa4ssword")

    def test_password_not_in_repr(self) -> None:
        """The password never shows in a repr (logs, tracebacks)."""
        self.assertNotIn("pässword", repr(CREDENTIALS))


class AuthenticateTests(SynchronousTestCase):
    def test_plain(self) -> None:
        """PLAIN sends one line with the initial response; 235 is success."""
        session = _Session("PLAIN LOGIN", [(235, "2.7.0 ok")])
        self.successResultOf(_run(session))
        self.assertEqual(session.lines, [b"AUTH PLAIN " + plain_response(CREDENTIALS) + b"\r\n"])

    def test_login(self) -> None:
        """LOGIN answers the two 334 challenges with the user and the password."""
        session = _Session("LOGIN", [(334, "VXNlcm5hbWU6"), (334, "UGFzc3dvcmQ6"), (235, "ok")])
        self.successResultOf(_run(session))
        self.assertEqual(
            [base64.b64decode(line) for line in session.lines[1:]],
            [b"relay@example.com", "pässword".encode()],
        )
        self.assertEqual(session.lines[0], b"AUTH LOGIN\r\n")

    def test_refused(self) -> None:
        """535 is a local 451 4.7.8 with the relay's reply: deferred, not bounced."""
        session = _Session("PLAIN", [(535, "5.7.8 Error: authentication failed")])
        error = self.failureResultOf(_run(session), SessionError).value
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.7.8"))
        self.assertFalse(error.reply.remote)
        self.assertIn("535 5.7.8 Error: authentication failed", error.reply.text)

    def test_never_without_tls(self) -> None:
        """Without TLS nothing is sent: 451 4.7.0."""
        session = _Session("PLAIN", [], tls=False)
        error = self.failureResultOf(_run(session), SessionError).value
        self.assertEqual(error.reply.enhanced, "4.7.0")
        self.assertEqual(session.lines, [])

    def test_no_usable_mechanism(self) -> None:
        """A relay offering only other mechanisms: 451 4.7.0, nothing sent."""
        session = _Session("CRAM-MD5", [])
        error = self.failureResultOf(_run(session), SessionError).value
        self.assertIn("neither AUTH PLAIN nor AUTH LOGIN", error.reply.text)
        self.assertEqual(session.lines, [])

    def test_unexpected_challenge(self) -> None:
        """A third 334 after LOGIN's two is a failure, not an endless exchange."""
        session = _Session("LOGIN", [(334, "a"), (334, "b"), (334, "c")])
        error = self.failureResultOf(_run(session), SessionError).value
        self.assertEqual(error.reply.enhanced, "4.7.0")
        self.assertEqual(len(session.lines), 3)
