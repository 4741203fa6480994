"""Line and encoded-word lengths of API-built messages, as independent checkers measure
them: quoted-printable and base64 lines at most 76 characters (RFC 2045 §6.7, §6.8) and
encoded words at most 75 (RFC 2047 §2), in every header field and MIME part."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from twisted.trial.unittest import SynchronousTestCase

from rail.mail.addresses import Mailbox
from rail.mail.compose import build_message
from rail.mail.request import Attachment, SendRequest

_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")

_TEXTS = [
    "é" * 300,
    "x" * 77 + "é",
    ("Grüße aus Köln, " * 12 + "\n") * 12,
    "=" * 200,
    "a\tb " * 100,
    "日本語のテキスト" * 40,
]
_SUBJECTS = [
    "a" * 200,
    "é" * 100,
    "averyveryverylongwordwithoutspaces" * 5 + " é",
    "Re: " + "日本語のテキスト" * 20,
    "x" * 77 + " y",
]


def _requests() -> list[SendRequest]:
    sender = Mailbox("Ataca Ünïcode Dépt " * 4, "noreply", "ataca.io")
    requests = []
    for text, subject in zip(_TEXTS, _SUBJECTS * 2, strict=False):
        requests.append(
            SendRequest(
                sender=sender,
                to=(Mailbox("Bøb " * 20, "bob", "example.com"),),
                subject=subject,
                body_text=text,
                headers=(("X-Note", subject),),
            )
        )
        requests.append(
            SendRequest(
                sender=sender,
                to=(Mailbox("", "bob", "example.com"),),
                subject=subject,
                body_text=text,
                body_html=f"<p>{text}</p>",
                attachments=(
                    Attachment("notes.txt", "text", "plain", (), text.encode("utf-8")),
                    Attachment(
                        "data.bin", "application", "octet-stream", (), bytes(range(256)) * 4
                    ),
                ),
            )
        )
    return requests


class LengthTests(SynchronousTestCase):
    def test_encoded_lines_at_most_76(self) -> None:
        """Every quoted-printable or base64 body line of every part is at most 76
        characters, and the checks reach both encodings."""
        seen = set()
        for request in _requests():
            data = build_message(request, message_id="M", hostname="h.test", now=0.0)
            assert isinstance(data, bytes), data
            for part in message_from_bytes(data, policy=policy.default).walk():
                cte = str(part.get("Content-Transfer-Encoding", "")).lower()
                if part.is_multipart() or cte not in ("quoted-printable", "base64"):
                    continue
                seen.add(cte)
                body = part.get_payload(decode=False)
                for line in body.splitlines():
                    self.assertLessEqual(len(line), 76, (cte, line))
        self.assertEqual(seen, {"quoted-printable", "base64"})

    def test_encoded_words_at_most_75(self) -> None:
        """Every encoded word in the message (header fields of the message and of its
        parts) is at most 75 characters long."""
        count = 0
        for request in _requests():
            data = build_message(request, message_id="M", hostname="h.test", now=0.0)
            assert isinstance(data, bytes), data
            for word in _ENCODED_WORD.findall(data):
                count += 1
                self.assertLessEqual(len(word), 75, word)
        self.assertGreater(count, 50)
