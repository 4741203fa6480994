"""The composed message is the one ``EmailMessage`` builds, field for field and byte for byte.

``rail.mail.compose`` writes header fields and a lone text part without building an
``EmailMessage`` (the stdlib's parse and fold was most of the API's CPU per message).
These tests hold that shortcut to the slow path: :func:`_stdlib_build` below is the
previous ``build_message``, everything set on one ``EmailMessage``, and hundreds of
generated requests (non-ASCII names and subjects, fields that need folding, encoded words,
custom fields, every body encoding, multipart messages) must come out the same, as bytes
and as the stdlib parses them back.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.mail import compose, headers
from rail.mail.addresses import Mailbox
from rail.mail.compose import build_message
from rail.mail.headers import (
    ASCII_POLICY,
    UTF8_POLICY,
    format_date,
    parse_header_section,
    write_address_field,
    write_field,
)
from rail.mail.request import _UNSAFE, Attachment, ComposeError, SendRequest, _invalid

MESSAGE_ID = "01KMTBZ1G0ABCDEFGHJKMNPQRS"
HOSTNAME = "mail.rail.test"
NOW = 1774699200.0
_NOT_CRLF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_BOUNDARY = re.compile(rb"={15}\d+==")
# What a field written directly (``plain``) must be: nothing left for a safety check.
_PRINTABLE_LINE = re.compile(rb"\A[ -~]+\r\n\Z")


def _stdlib_build(
    request: SendRequest,
    *,
    message_id: str = MESSAGE_ID,
    hostname: str = HOSTNAME,
    now: float = NOW,
) -> bytes | ComposeError:
    """``build_message`` as it was: every field set on one ``EmailMessage`` and the whole
    message written by its generator. One deliberate change: a message of attachments
    only now gets ``MIME-Version`` (``add_attachment`` never set it; RFC 2045 §4 wants it)."""
    message = EmailMessage(policy=UTF8_POLICY if request.smtputf8 else ASCII_POLICY)
    message["From"] = request.sender.header()
    for name, mailboxes in (("To", request.to), ("Cc", request.cc), ("Reply-To", request.reply_to)):
        if mailboxes:
            message[name] = [m.header() for m in mailboxes]
    if request.subject is not None:
        message["Subject"] = request.subject
    message["Date"] = format_date(now)
    message["Message-ID"] = f"<{message_id}@{hostname}>"
    for name, value in request.headers:
        message[name] = value
    if request.body_text is not None:
        message.set_content(request.body_text)
        if request.body_html is not None:
            message.add_alternative(request.body_html, subtype="html")
    elif request.body_html is not None:
        message.set_content(request.body_html, subtype="html")
    for attachment in request.attachments:
        message.add_attachment(
            attachment.content,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
            params=dict(attachment.params),
        )
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]
    if "MIME-Version" not in message:
        message["MIME-Version"] = "1.0"
    for part in message.walk():
        for name, value in part.items():
            if _UNSAFE.search(str(value)):
                return _invalid(
                    f"header {name} would contain a line break or control character"
                    " (encoded words are decoded before this check)"
                )
    data = message.as_bytes()
    if _NOT_CRLF.search(data) or not data.endswith(b"\r\n"):
        return _invalid("the message could not be built with CRLF line ends")
    section = parse_header_section(data)
    if (
        not section.has_separator
        or len(section.fields) != len(message.items())
        or len(section.values("from")) != 1
        or section.has("bcc")
    ):
        return _invalid("the header fields could not be built as requested")
    if any(len(line) > 998 for line in data.split(b"\r\n")):
        return _invalid(
            "a header line would be longer than 998 octets;"
            " shorten the display names or header values"
        )
    return data


def _registry_field(name: str, value: Any, write_policy: Any) -> tuple[bytes, str]:
    """One field through the header registry, as ``EmailMessage`` stores and writes it."""
    _, header = write_policy.header_store_parse(name, value)
    return write_policy.fold_binary(name, header), str(header)


def _same_boundaries(data: bytes) -> bytes:
    """Multipart boundaries are random: number them in order of first appearance."""
    seen: dict[bytes, bytes] = {}
    return _BOUNDARY.sub(lambda m: seen.setdefault(m.group(), b"B%d" % len(seen)), data)


def _shape(message: Message) -> Any:
    """What a reader of the message gets: every field as parsed, and the decoded
    content of every part."""
    fields = [(name, str(value)) for name, value in message.items()]
    if message.is_multipart():
        parts = message.get_payload()
        assert isinstance(parts, list)
        return fields, [_shape(part) for part in parts]
    return fields, message.get_payload(decode=True)


def _parsed(data: bytes) -> Any:
    return _shape(message_from_bytes(_same_boundaries(data), policy=policy.default))


# -- generated inputs -----------------------------------------------------------------------

_WORDS = [
    "Hello",
    "your",
    "receipt",
    "#1234",
    "Re:",
    "[ticket]",
    "(urgent)",
    '"quoted"',
    "a,b",
    "x;y",
    "<tag>",
    "e-mail@example.com",
    "100%",
    "=",
    "=?",
    "?=",
    "=?utf-8?q?caf=C3=A9?=",
    "=?iso-8859-1?b?SGk=?=",
    "\\back",
    "Grüße",
    "Köln",
    "☕",
    "日本語",
    "naïve",
    "\U0001f600",
    "tab\there",
    "x" * 40,
    "y" * 90,
]
_NAMES = [
    "",
    "Bob",
    "Bob Smith",
    "J. Smith",
    "Smith, Bob",
    "O'Neil",
    "Dr. Who (admin)",
    "a@b",
    'say "hi"',
    "back\\slash",
    "Jöhn",
    "山田 太郎",
    "=?utf-8?q?Caf=C3=A9?=",
    "x" * 30,
    "y" * 70,
    "  spaced  out ",
    "a=?b",
    "semi;colon",
    "[brackets]",
]
_ASCII_ADDRESSES = [
    "bob@example.com",
    "first.last@sub.example.org",
    "o'neil+tag@example.net",
    "x" * 40 + "@example.com",
    "a!#$%&'*+/=?^_`{|}~-z@example.com",
]
_UTF8_ADDRESSES = ["jöhn@exämple.com", "用户@例子.广告", "ascii@exämple.com"]
_HEADER_NAMES = [
    "X-Campaign",
    "List-Unsubscribe",
    "In-Reply-To",
    "References",
    "Keywords",
    "Comments",
    "x-lower",
    "X-" + "L" * 60,
    "Orig-Date",
]


def _text(rng: random.Random, count: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(count)]
    separators = [rng.choice([" ", " ", " ", "  ", "\t"]) for _ in words]
    text = "".join(w + s for w, s in zip(words, separators, strict=True)).rstrip()
    if rng.random() < 0.1:
        text = rng.choice([" ", "  ", "\t"]) + text
    if rng.random() < 0.1:
        text += " "
    return text


def _plain_text(rng: random.Random, limit: int) -> str:
    """Printable ASCII words that fit ``limit``: the shape most fields have."""
    words = [rng.choice(["Hello", "order", "#42", "shipped", "(x)", "a,b", "<y>", "z=1"])]
    while len(" ".join(words)) < rng.randint(1, limit):
        words.append(rng.choice(["your", "receipt", "is", "ready", "today", "Re:", "[1]"]))
    return " ".join(words)[:limit].strip() or "x"


def _mailbox(rng: random.Random, utf8: bool) -> Mailbox:
    address = rng.choice(_UTF8_ADDRESSES if utf8 else _ASCII_ADDRESSES)
    local, _, domain = address.rpartition("@")
    name = rng.choice(_NAMES) if rng.random() < 0.7 else _plain_text(rng, 40)
    return Mailbox(name, local, domain)


def _body(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return ""
    if kind == 1:
        return "Hi Bob,\n\nyour order shipped.\n"
    if kind == 2:  # ASCII, some lines over 78: quoted-printable
        return "\n".join("w" * rng.randint(1, 120) + " " * rng.randint(0, 2) for _ in range(15))
    if kind == 3:  # mostly non-ASCII: base64
        return "\n".join("日本語のテキスト" * rng.randint(1, 5) for _ in range(rng.randint(1, 14)))
    if kind == 4:  # a little non-ASCII, few lines (the short quoted-printable path)
        return "Schöne Grüße\n☕ " + "=" * rng.randint(0, 5) + "\n"
    if kind == 5:  # a little non-ASCII, many lines (the long quoted-printable path)
        return "".join(f"line {i} é={i}\t \n" for i in range(rng.randint(11, 40)))
    if kind == 6:  # every kind of line break, trailing whitespace, no final newline
        return "one\rtwo\nthree\r\nfour\n\n  \t\nfive \x0c six\x0b" + "z" * rng.randint(70, 90)
    if kind == 7:  # long lines with escapes near the soft break
        return "".join(("a" * rng.randint(60, 80) + "=é" * 3 + "\n") for _ in range(12))
    return "".join(rng.choice("ab é\n\r\t=.") for _ in range(rng.randint(1, 400)))


def _request(rng: random.Random) -> SendRequest:
    utf8 = rng.random() < 0.15

    def mailboxes(most: int) -> tuple[Mailbox, ...]:
        return tuple(
            _mailbox(rng, utf8 and rng.random() < 0.5) for _ in range(rng.randint(0, most))
        )

    subject = None
    if rng.random() < 0.9:
        subject = _plain_text(rng, 60) if rng.random() < 0.5 else _text(rng, rng.randint(0, 14))
    custom = []
    for name in rng.sample(_HEADER_NAMES, rng.randint(0, 3)):
        if name == "Orig-Date":
            value = rng.choice(
                [format_date(NOW - 86400), "not a date", "Sat, 1 Mar 2025 1:2:3 +0100"]
            )
        elif name in ("In-Reply-To", "References"):
            value = " ".join(
                f"<{i}.{rng.randrange(10**9)}@example.com>" for i in range(rng.randint(1, 4))
            )
        else:
            value = _plain_text(rng, 70) if rng.random() < 0.5 else _text(rng, rng.randint(0, 10))
        custom.append((name, value))
    shape = rng.randrange(6)
    text = _body(rng) if shape in (0, 2, 4) else None
    html = f"<p>{_body(rng)}</p>" if shape in (1, 2, 5) else None
    attachments = ()
    if shape >= 3:
        attachments = (
            Attachment(
                rng.choice(["a.pdf", "report é.pdf", "x" * 80 + ".txt"]),
                "application",
                "pdf",
                (),
                b"%PDF" * rng.randint(1, 50),
            ),
        )
    return SendRequest(
        sender=_mailbox(rng, utf8 and rng.random() < 0.3),
        to=mailboxes(4) or (_mailbox(rng, False),),
        cc=mailboxes(2),
        reply_to=mailboxes(1),
        subject=subject,
        body_text=text,
        body_html=html,
        headers=tuple(custom),
        attachments=attachments,
    )


class FieldTests(SynchronousTestCase):
    def test_unstructured_fields(self) -> None:
        """Subject and custom fields are written as the header registry writes them, for
        plain, long, non-ASCII, encoded-word and odd-whitespace values, under both
        policies; the value checked for line breaks is the registry's too."""
        rng = random.Random(1)
        values = [
            "",
            " ",
            "x",
            "x" * 68,
            "x" * 69,
            "x" * 70,
            "a  b",
            " leading",
            "trailing ",
            "=?utf-8?q?x=0D=0Ay?=",
            "=?utf-8?q?caf=C3=A9?=",
            "ab=?cd",
        ]
        values += [_text(rng, rng.randint(0, 16)) for _ in range(250)]
        values += [_plain_text(rng, rng.randint(1, 90)) for _ in range(250)]
        for write_policy in (ASCII_POLICY, UTF8_POLICY):
            for value in values:
                for name in ("Subject", "X-Campaign", "Keywords", "X-" + "L" * 60):
                    written = write_field(name, value, write_policy)
                    expected = _registry_field(name, value, write_policy)
                    self.assertEqual((written.data, written.value), expected, (name, value))
                    if written.plain:
                        self.assertRegex(written.data, _PRINTABLE_LINE, (name, value))

    def test_address_fields(self) -> None:
        """From, To, Cc and Reply-To are written as ``message[name] = [Address...]``
        writes them: display names plain, quoted, encoded or raw UTF-8, one address or
        a list long enough to fold."""
        rng = random.Random(2)
        for _ in range(500):
            utf8 = rng.random() < 0.3
            write_policy = UTF8_POLICY if utf8 else ASCII_POLICY
            mailboxes = [
                _mailbox(rng, utf8 and rng.random() < 0.5) for _ in range(rng.randint(1, 4))
            ]
            for name in ("From", "To", "Reply-To"):
                written = write_address_field(name, mailboxes, write_policy)
                expected = _registry_field(name, [m.header() for m in mailboxes], write_policy)
                self.assertEqual((written.data, written.value), expected, mailboxes)
                if written.plain:
                    self.assertRegex(written.data, _PRINTABLE_LINE, mailboxes)

    def test_canonical_date_and_message_id(self) -> None:
        """The Date and Message-ID Rail generates need no trip through the registry:
        written directly they are what it writes."""
        rng = random.Random(3)
        for _ in range(500):
            now = rng.uniform(0, 4102444800)
            date = format_date(now)
            message_id = f"<{''.join(rng.choices('0123456789ABCDEFGHJKMNPQRSTVWXYZ', k=26))}@"
            message_id += rng.choice(["rail.test", "mail.example.com", "a" * 40 + ".example"]) + ">"
            for name, value in (("Date", date), ("Message-ID", message_id)):
                written = write_field(name, value, ASCII_POLICY, canonical=True)
                self.assertEqual(
                    (written.data, written.value), _registry_field(name, value, ASCII_POLICY)
                )

    def test_header_classes_bounded(self) -> None:
        """Header classes are cached per name the registry knows; any number of new
        custom field names (an app's choice) share one class and do not grow the cache."""
        for index in range(500):
            write_field(f"X-Field-{index}", "=?utf-8?q?caf=C3=A9?=", ASCII_POLICY)
        registry = headers._REGISTRY
        self.assertLessEqual(len(registry._classes), len(registry.registry) + 1)
        self.assertIs(registry["X-One"], registry["x-two"])
        self.assertIsNot(registry["Subject"], registry["X-One"])

    def test_plain_fields_skip_the_registry(self) -> None:
        """The common shape (plain ASCII sender, recipients, subject, custom field, the
        generated Date and Message-ID, a short text body) never reaches the header
        registry or an ``EmailMessage``: that is the point of the shortcut."""

        def refuse(*args: object, **kwargs: object) -> Any:
            raise AssertionError("the slow path was taken")

        self.patch(headers, "_registry_field", refuse)
        self.patch(compose, "_multipart", refuse)
        request = SendRequest(
            sender=Mailbox("Ataca", "noreply", "ataca.io"),
            to=(Mailbox("", "bob", "example.com"), Mailbox("J. Smith", "j", "example.com")),
            cc=(Mailbox("Carl", "c", "example.com"),),
            reply_to=(Mailbox("Help", "help", "ataca.io"),),
            subject="Your receipt #1234 (order 5)",
            body_text="Thanks!\n" * 30,
            headers=(("X-Campaign", "spring"), ("List-Unsubscribe", "<https://u.test/1>")),
        )
        data = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
        assert isinstance(data, bytes), data
        self.assertIn(b"\r\nSubject: Your receipt #1234 (order 5)\r\n", data)


class BodyTests(SynchronousTestCase):
    def test_text_part_as_set_content_writes_it(self) -> None:
        """A lone text part has the fields, transfer encoding (7bit, quoted-printable or
        base64) and encoded body ``EmailMessage.set_content`` gives it."""
        rng = random.Random(4)
        bodies = ["", "\n", "\r", "x", "é", "a\r\n", "=", " \n\t", "x" * 76, "x" * 77, "x" * 79]
        # Around the ten lines that decide between quoted-printable and base64.
        bodies += ["Dear customer, your café order\n" * n for n in (9, 10, 11, 12)] + [
            "é\n" * n for n in (10, 11)
        ]
        bodies += [_body(rng) for _ in range(300)]
        for text in bodies:
            for subtype in ("plain", "html"):
                for write_policy in (ASCII_POLICY, UTF8_POLICY):
                    message = EmailMessage(policy=write_policy)
                    message.set_content(text, subtype=subtype)
                    limit = headers.line_limit(write_policy)
                    count, data = compose._single_part(text, subtype, limit)
                    self.assertEqual(data, message.as_bytes(), text)
                    self.assertEqual(count, len(message.items()))

    def test_all_encodings_generated(self) -> None:
        """The generated bodies reach every transfer encoding (so the test above means
        something)."""
        rng = random.Random(4)
        seen = {compose._encode_text(_body(rng), 78)[0] for _ in range(300)}
        self.assertEqual(seen, {"7bit", "quoted-printable", "base64"})


class MessageTests(SynchronousTestCase):
    def assertSameMessage(self, request: SendRequest) -> None:
        fast = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
        slow = _stdlib_build(request)
        if isinstance(slow, ComposeError) or isinstance(fast, ComposeError):
            self.assertEqual(fast, slow, request)
            return
        self.assertEqual(_same_boundaries(fast), _same_boundaries(slow), request)
        self.assertEqual(_parsed(fast), _parsed(slow), request)

    def test_generated_requests(self) -> None:
        """Hundreds of generated requests (every field, both policies, every body shape)
        compose to the message ``EmailMessage`` builds: the same bytes, up to the random
        multipart boundaries, and the same fields and contents parsed back."""
        rng = random.Random(5)
        shapes: set[tuple[bool, bool]] = set()
        for _ in range(500):
            request = _request(rng)
            shapes.add((request.smtputf8, bool(request.attachments)))
            self.assertSameMessage(request)
        self.assertEqual(len(shapes), 4)

    def test_refusals_match(self) -> None:
        """Requests the stdlib path refuses (an encoded word hiding CR or LF in any
        field, a display name too long to fold under 998 octets) are refused too, as
        400 INVALID_REQUEST."""
        sender = Mailbox("", "noreply", "ataca.io")
        bad = "=?utf-8?q?x=0D=0ABcc:_evil@z.test?="
        cases: list[Callable[[], SendRequest]] = [
            lambda: SendRequest(sender=sender, to=(Mailbox(bad, "a", "b.test"),), body_text="x"),
            lambda: SendRequest(
                sender=sender, to=(sender,), cc=(Mailbox(bad, "a", "b.test"),), body_text="x"
            ),
            lambda: SendRequest(
                sender=Mailbox(bad, "noreply", "ataca.io"), to=(sender,), body_text="x"
            ),
            lambda: SendRequest(sender=sender, to=(sender,), subject=bad, body_text="x"),
            lambda: SendRequest(
                sender=sender,
                to=(sender,),
                subject="ok",
                body_text="x",
                body_html="y",
                headers=(("X-A", bad),),
            ),
            lambda: SendRequest(
                sender=sender, to=(Mailbox("N" * 1200, "a", "b.test"),), body_text="x"
            ),
            lambda: SendRequest(
                sender=sender,
                to=(sender,),
                attachments=(Attachment("=?utf-8?q?a=0D=0Ab?=", "text", "plain", (), b"a"),),
            ),
        ]
        for case in cases:
            request = case()
            fast = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
            slow = _stdlib_build(request)
            assert isinstance(fast, ComposeError) and isinstance(slow, ComposeError), request
            self.assertEqual((fast.code, fast.http_status), (slow.code, slow.http_status))

    def test_decoded_controls_in_display_names(self) -> None:
        """An encoded word in a display name is quoted, and the stdlib writes a quoted
        encoded word out decoded: a NUL, ESC or line break it holds would reach the header
        raw (the stdlib path queued NUL and ESC). Each written field is checked as bytes,
        so all are 400 naming the field."""
        sender = Mailbox("", "noreply", "ataca.io")
        for name in (
            "=?utf-8?q?a=00b?=",
            "=?utf-8?q?a=0Bb?=",
            "x, =?utf-8?q?a=1Bb?=",
            "Bob, =?utf-8?q?x=0D=0ABcc:_evil@z.test?=",
            "x: =?utf-8?b?YQ1i?=",
            "=?utf-8?q?a=7Fb?=",
        ):
            for request in (
                SendRequest(sender=sender, to=(Mailbox(name, "a", "b.test"),), body_text="x"),
                SendRequest(
                    sender=Mailbox(name, "noreply", "ataca.io"), to=(sender,), body_text="x"
                ),
            ):
                result = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
                assert isinstance(result, ComposeError), (name, result)
                self.assertEqual((result.code, result.http_status), ("INVALID_REQUEST", 400))
                self.assertIn("would contain a line break or control character", result.message)

    def test_attachments_only_mime_version(self) -> None:
        """A message of attachments only carries MIME-Version once, at the top (the
        stdlib path used to leave it out)."""
        request = SendRequest(
            sender=Mailbox("", "noreply", "ataca.io"),
            to=(Mailbox("", "bob", "example.com"),),
            attachments=(Attachment("a.txt", "text", "plain", (), b"abc"),),
        )
        data = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
        assert isinstance(data, bytes)
        self.assertEqual(data.count(b"MIME-Version: 1.0\r\n"), 1)
        self.assertEqual(message_from_bytes(data, policy=policy.default)["MIME-Version"], "1.0")

    def test_orig_date_twice(self) -> None:
        """A field the RFC allows once, given twice in different case, is 400 (the
        stdlib path raised, which the API answered with 500)."""
        request = SendRequest(
            sender=Mailbox("", "noreply", "ataca.io"),
            to=(Mailbox("", "bob", "example.com"),),
            body_text="x",
            headers=(("Orig-Date", format_date(NOW)), ("orig-date", format_date(NOW))),
        )
        result = build_message(request, message_id=MESSAGE_ID, hostname=HOSTNAME, now=NOW)
        assert isinstance(result, ComposeError)
        self.assertEqual((result.code, result.http_status), ("INVALID_REQUEST", 400))
        self.assertIn("orig-date may be given only once", result.message)
